"""URL map: health, metrics, admin, the REST API, GitHub webhooks and the dashboard."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.routers import DefaultRouter

from analysis import api as analysis_api
from analysis import quarantine_api
from analysis.pages import failures as failure_pages
from analysis.pages import overview as overview_pages
from analysis.pages import repository as repository_pages
from analysis.pages import test_detail as test_pages
from flakeguard import health, metrics_view
from ingest import api as ingest_api
from ingest import token_api, upload_api
from jobs import api as jobs_api
from polling import ownership_api, webhooks


class BrowserYamlRenderer(OpenApiYamlRenderer):
    """The schema as YAML text, which a browser shows rather than downloads."""

    media_type = "text/plain"


# The schema and its docs page describe the API, not anyone's data: open to all.
schema_view = SpectacularAPIView.as_view(
    renderer_classes=[BrowserYamlRenderer, OpenApiYamlRenderer, OpenApiJsonRenderer],
    permission_classes=[AllowAny],
)
docs_view = SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[AllowAny])

router = DefaultRouter()
router.register("jobs", jobs_api.JobViewSet, basename="job")
router.register("queues", jobs_api.QueueViewSet, basename="queue")
router.register("runs", ingest_api.RunViewSet, basename="run")
router.register("tests", analysis_api.TestScoreViewSet, basename="test")
router.register("quarantine", quarantine_api.QuarantineViewSet, basename="quarantine")
router.register("uploads", upload_api.UploadViewSet, basename="upload")
router.register("tokens", token_api.TokenViewSet, basename="token")
router.register("incidents", analysis_api.IncidentViewSet, basename="incident")

urlpatterns = [
    path("health", health.overview, name="health"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics_view.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("webhooks/github", webhooks.github_webhook, name="github-webhook"),
    path("api/v1/schema/", schema_view, name="schema"),
    path("api/v1/docs/", docs_view, name="api-docs"),
    path("api/v1/codeowners/", ownership_api.CodeOwnersView.as_view(), name="codeowners"),
    path("api/v1/", include(router.urls)),
    path("repos/<path:full_name>/tests/<int:test_id>/", test_pages.test_detail, name="test-detail"),
    path("repos/<path:full_name>/failures/", failure_pages.failure_groups, name="failure-groups"),
    path("repos/<path:full_name>/", repository_pages.repository_tests, name="repository-tests"),
    path("", overview_pages.overview, name="dashboard"),
]

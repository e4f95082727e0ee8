"""The made-up test suite of the sample history: file, class and test names, durations, failures.

Names follow what pytest (``tests/api/test_orders.py::TestOrderApi::test_list_orders``) or
Maven Surefire (``com.acme.webshop.orders.OrderApiTest.listOrders``) would report for a
mid-sized web shop, and failure profiles give the messages and stack traces a real run of
such a suite prints: intermittent ones for flaky tests, stable ones for code that is broken,
and infrastructure ones for outages. Pure data and string building; no I/O.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

# (area, class stems, nouns); the last area is the module added mid-history.
AREAS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("cart", ("Cart", "CartMerge"), ("item", "quantity", "line_total", "guest_cart", "saved_cart")),
    (
        "checkout",
        ("CheckoutFlow", "CheckoutValidation"),
        ("shipping_address", "billing_address", "order_summary", "payment_step", "confirmation"),
    ),
    (
        "payments",
        ("StripeGateway", "Refunds", "PaymentWebhooks"),
        ("charge", "refund", "payment_intent", "idempotency_key", "webhook_signature"),
    ),
    (
        "orders",
        ("OrderLifecycle", "OrderQueries"),
        ("order_status", "cancellation", "order_number", "invoice", "fulfilment"),
    ),
    (
        "inventory",
        ("StockLevels", "Reservations"),
        ("stock_level", "reservation", "backorder", "warehouse", "restock"),
    ),
    (
        "shipping",
        ("ShippingRates", "Carriers"),
        ("rate", "carrier_label", "tracking_number", "delivery_estimate", "parcel_weight"),
    ),
    (
        "accounts",
        ("Registration", "Profile"),
        ("user", "email_change", "password_reset", "profile", "newsletter_opt_in"),
    ),
    (
        "auth",
        ("Login", "Tokens"),
        ("login", "session", "access_token", "refresh_token", "otp_code"),
    ),
    ("search", ("ProductSearch", "Facets"), ("query", "facet", "synonym", "typo", "ranking")),
    (
        "catalog",
        ("Products", "Categories"),
        ("product", "variant", "category_tree", "slug", "stock"),
    ),
    ("pricing", ("PriceRules", "Currency"), ("price", "price_rule", "fx_rate", "rounding", "net")),
    (
        "discounts",
        ("Coupons", "Promotions"),
        ("coupon", "promotion", "bundle_discount", "free_shipping", "usage_limit"),
    ),
    ("tax", ("VatRates", "TaxExemptions"), ("vat_rate", "tax_line", "reverse_charge", "exemption")),
    (
        "invoices",
        ("InvoicePdf", "InvoiceNumbering"),
        ("invoice_pdf", "invoice_number", "credit_note", "due_date", "line_item"),
    ),
    ("emails", ("TransactionalEmails",), ("order_mail", "shipping_notice", "template", "locale")),
    ("notifications", ("PushNotifications", "Digest"), ("notification", "digest", "device_token")),
    ("webhooks", ("OutgoingWebhooks",), ("delivery", "retry", "signature", "payload", "endpoint")),
    ("reviews", ("Reviews", "Moderation"), ("review", "rating", "moderation_queue", "spam_filter")),
    ("wishlist", ("Wishlist",), ("wishlist", "shared_link", "price_alert", "wishlist_item")),
    ("addresses", ("AddressBook", "AddressValidation"), ("address", "postcode", "country")),
    ("recommendations", ("Recommendations",), ("recommendation", "similar_product", "bestseller")),
    (
        "reports",
        ("SalesReports", "Exports"),
        ("sales_report", "csv_export", "date_range", "revenue"),
    ),
    ("admin", ("AdminOrders", "AdminProducts"), ("bulk_action", "changelist", "permission")),
    (
        "cache",
        ("CacheInvalidation",),
        ("cache_key", "invalidation", "ttl", "stale_entry", "warmup"),
    ),
    ("tasks", ("CeleryTasks", "Scheduling"), ("task", "retry_policy", "schedule", "dead_letter")),
    ("media", ("ImageUploads", "Thumbnails"), ("image", "thumbnail", "upload", "content_type")),
    ("i18n", ("Translations", "Localisation"), ("translation", "locale", "date_format", "plural")),
    ("feeds", ("ProductFeeds",), ("google_feed", "feed_item", "gtin", "feed_schedule")),
    ("loyalty", ("LoyaltyPoints", "Tiers"), ("points", "tier", "expiry", "redemption", "bonus")),
    ("gift_cards", ("GiftCards",), ("gift_card", "balance", "code", "partial_redemption")),
    ("subscriptions", ("Subscriptions", "Renewals"), ("subscription", "renewal", "trial")),
    ("rate_limit", ("RateLimiter",), ("bucket", "burst", "quota", "retry_after", "client_key")),
    ("health", ("HealthChecks",), ("liveness", "readiness", "database_check", "redis_check")),
    ("audit", ("AuditLog",), ("audit_event", "actor", "diff", "retention")),
    ("sessions", ("Sessions",), ("session", "cookie", "expiry", "anonymous_session", "csrf_token")),
    ("storefront", ("HomePage", "ProductPage"), ("home_page", "product_page", "breadcrumbs")),
    ("api_products", ("ProductApi",), ("list_endpoint", "detail_endpoint", "pagination", "etag")),
    ("api_orders", ("OrderApi",), ("create_endpoint", "status_endpoint", "throttling")),
    ("graphql", ("GraphqlQueries", "GraphqlMutations"), ("query", "mutation", "dataloader")),
    ("returns", ("Returns", "RmaLabels"), ("return_request", "rma_label", "refund_amount")),
)
ADDED_AREA = AREAS[-1]

_VERBS = (
    "create", "update", "delete", "list", "get", "apply", "reject", "validate", "calculate",
    "render", "export", "merge", "cancel", "retry", "expire", "sync",
)  # fmt: skip
_SUFFIXES = (
    "", "", "", "_when_empty", "_with_invalid_input", "_for_guest_user", "_for_staff_user",
    "_is_idempotent", "_returns_404", "_returns_403", "_respects_timezone", "_after_expiry",
    "_concurrently", "_with_unicode", "_in_bulk", "_without_permission", "_uses_cache",
)  # fmt: skip
# pytest parametrize ids as pytest writes them (non-ASCII escaped), some needing XML escaping.
_PARAMS = (
    "DE-0.19", "FR-0.2", "en-US", "de-DE", "guest", "staff", "0", "None", "1.5-EUR",
    "<script>alert(1)</script>", 'say "hi"', "a&b", "Cr\\xe8me br\\xfbl\\xe9e", "empty-cart",
)  # fmt: skip
# (layer folder, median seconds, share of classes, Java class suffix)
_LAYERS = (
    ("", 0.004, 0.55, ""),
    ("api/", 0.03, 0.3, "Api"),
    ("integration/", 0.25, 0.15, "Integration"),
)
DURATION_VARIANTS = 16  # per-result durations are drawn from this many jittered values per test


@dataclass(frozen=True)
class Case:
    """One test case as a JUnit report names it."""

    key: str  # "classname::name", the identity the ground truth uses
    classname: str
    name: str
    file: str
    line: int
    func: str  # function / method name without parameters
    in_class: bool  # pytest: defined in a class (tracebacks show "self = ...")
    median: float  # median duration in seconds


@dataclass(frozen=True)
class FailureProfile:
    """How one kind of failure looks in pytest and in Surefire output."""

    py_type: str
    py_message: str  # str.format template over the values of draw_values()
    py_source: str  # the source line pytest marks with ">"
    java_type: str
    java_message: str
    timeout: bool = False  # the failing run lasts as long as the timeout


_J_ASSERT = "org.opentest4j.AssertionFailedError"
FLAKY_PROFILES = (
    FailureProfile(
        "TimeoutError",
        "Timed out after {secs}s waiting for order #{order} to reach status 'paid'",
        "wait_until(lambda: order.refresh().status == 'paid', timeout={secs})",
        "org.awaitility.core.ConditionTimeoutException",
        "Condition with lambda expression in {short} was not fulfilled within {secs} seconds.",
        timeout=True,
    ),
    FailureProfile(
        "AssertionError",
        "assert 'pending' == 'paid'\n  - paid\n  + pending",
        "assert order.status == 'paid'",
        _J_ASSERT,
        "expected: <PAID> but was: <PENDING>",
    ),
    FailureProfile(
        "ConnectionResetError",
        "[Errno 104] Connection reset by peer",
        "response = live_server_client.post(url, json=payload)",
        "java.net.SocketException",
        "Connection reset",
    ),
    FailureProfile(
        "requests.exceptions.ReadTimeout",
        "HTTPConnectionPool(host='localhost', port={port}): Read timed out. (read timeout={secs})",
        "hits = search_client.search(index='products', q=query)",
        "java.net.SocketTimeoutException",
        "Read timed out after {secs} seconds (localhost:{port})",
        timeout=True,
    ),
    FailureProfile(
        "AssertionError",
        "assert {n} == {m}\n +  where {n} = len([<EmailMessage #{order}>, ...])",
        "assert len(mail.outbox) == {m}",
        _J_ASSERT,
        "expected: <{m}> but was: <{n}>",
    ),
    FailureProfile(
        "django.db.utils.OperationalError",
        "deadlock detected\nDETAIL:  Process {pid} waits for ShareLock on transaction {txn}; "
        "blocked by process {pid2}.",
        "reservation = Reservation.objects.select_for_update().get(pk=pk)",
        "org.springframework.dao.CannotAcquireLockException",
        "could not execute statement; SQL [n/a]; deadlock detected (transaction {txn})",
    ),
    FailureProfile(
        "AssertionError",
        "assert datetime.date(2026, 9, {d2}) == datetime.date(2026, 9, {d1})\n"
        " +  where datetime.date(2026, 9, {d2}) = <SalesReport #{order}>.period_start",
        "assert report.period_start == today",
        _J_ASSERT,
        "expected: <2026-09-{d1}> but was: <2026-09-{d2}>",
    ),
    FailureProfile(
        "redis.exceptions.ConnectionError",
        "Error 111 connecting to localhost:6379. Connection refused.",
        "cache.set(key, value, timeout=60)",
        "io.lettuce.core.RedisConnectionException",
        "Unable to connect to localhost/<unresolved>:6379",
    ),
    FailureProfile(
        "AssertionError",
        "Expected 'send_mail' to have been called once. Called 0 times.",
        "mock_send_mail.assert_called_once()",
        "org.mockito.exceptions.verification.WantedButNotInvoked",
        "Wanted but not invoked:\nmailSender.send(<any>);",
    ),
)
BROKEN_PROFILES = (
    FailureProfile(
        "AssertionError",
        'assert 200 == 201\n +  where 200 = <Response status_code=200, "application/json">'
        ".status_code",
        "assert response.status_code == 201",
        _J_ASSERT,
        "expected: <201> but was: <200>",
    ),
    FailureProfile(
        "KeyError",
        "'shipping_address'",
        "address = payload['shipping_address']",
        "java.lang.NullPointerException",
        'Cannot invoke "Address.getCountry()" because "order.shippingAddress" is null',
    ),
    FailureProfile(
        "TypeError",
        "calculate_tax() got an unexpected keyword argument 'region'",
        "tax = calculate_tax(order, region=order.region)",
        "java.lang.IllegalArgumentException",
        "region must not be null",
    ),
    FailureProfile(
        "AssertionError",
        "assert Decimal('{x}') == Decimal('{y}')\n +  where Decimal('{x}') = <Invoice #{order}>.total",
        "assert invoice.total == expected_total",
        _J_ASSERT,
        "expected: <{y}> but was: <{x}>",
    ),
    FailureProfile(
        "AssertionError",
        "assert 'Cr\u00e9me br\u00fbl\u00e9e' == 'Cr\u00e8me br\u00fbl\u00e9e'\n"
        "  - Cr\u00e8me br\u00fbl\u00e9e\n  + Cr\u00e9me br\u00fbl\u00e9e",
        "assert product.title == 'Cr\u00e8me br\u00fbl\u00e9e'",
        _J_ASSERT,
        "expected: <Cr\u00e8me br\u00fbl\u00e9e> but was: <Cr\u00e9me br\u00fbl\u00e9e>",
    ),
)
PR_PROFILE = FailureProfile(
    "AttributeError",
    "'Cart' object has no attribute 'total_with_tax'",
    "total = cart.total_with_tax",
    "java.lang.NoSuchMethodError",
    "'java.math.BigDecimal Cart.getTotalWithTax()'",
)
JOB_PROFILE = FailureProfile(  # a deprecation turned into an error by one runtime of the matrix
    "DeprecationWarning",
    "datetime.datetime.utcnow() is deprecated and scheduled for removal in a future version. "
    "Use timezone-aware objects to represent datetimes in UTC: datetime.datetime.now(datetime.UTC).",
    "issued_at = datetime.utcnow()",
    "java.lang.UnsupportedOperationException",
    "Reflective access to java.time.Clock is not permitted on this runtime",
)
OUTAGE_PROFILES = (
    FailureProfile(
        "ConnectionError",
        "database unavailable",
        "raise ConnectionError('database unavailable')",
        "org.springframework.jdbc.CannotGetJdbcConnectionException",
        "Failed to obtain JDBC Connection; nested exception is java.net.ConnectException: "
        "database unavailable",
    ),
    FailureProfile(
        "psycopg.OperationalError",
        'connection to server at "localhost" (127.0.0.1), port 5432 failed: Connection refused\n'
        "\tIs the server running on that host and accepting TCP/IP connections?",
        "connection = Connection.connect(conninfo, **kwargs)",
        "org.postgresql.util.PSQLException",
        "Connection to localhost:5432 refused. Check that the hostname and port are correct.",
    ),
)

# A runner that dies or a service container that is down: most tests of one job attempt error
# in setup with one of these (the first ones are what a dead service looks like from a test).
INFRA_PROFILES = (
    FailureProfile(
        "ConnectionRefusedError",
        "[Errno 111] Connection refused",
        "sock.connect(sa)",
        "java.net.ConnectException",
        "Connection refused",
    ),
    FailureProfile(
        "OSError",
        "[Errno 28] No space left on device: '/tmp/pytest-of-runner/pytest-0/test_{order}0'",
        "tmp_path = tmp_path_factory.mktemp(name)",
        "java.io.IOException",
        "No space left on device",
    ),
    FailureProfile(
        "TimeoutError",
        "timed out after {secs}s waiting for the service container on localhost:{port}",
        "wait_for_port('localhost', {port}, timeout={secs})",
        "org.testcontainers.containers.ContainerLaunchException",
        "Timed out waiting for container port to open (localhost ports: [{port}] should be "
        "listening)",
        timeout=True,
    ),
    *OUTAGE_PROFILES,
)
# What the rest of a dying job's tests report: the same death, seen from elsewhere.
INFRA_SECONDARY = (
    FailureProfile(
        "BrokenPipeError",
        "[Errno 32] Broken pipe",
        "self._sock.sendall(data)",
        "java.net.SocketException",
        "Broken pipe (Write failed)",
    ),
    FailureProfile(
        "RuntimeError",
        "Event loop is closed",
        "loop.run_until_complete(fixture_setup)",
        "java.lang.IllegalStateException",
        "Shutdown in progress",
    ),
)
# A noisy neighbour on the runner: tests time out together, killed by the per-test timeout.
NEIGHBOUR_PROFILE = FailureProfile(
    "Failed",
    "Timeout >{secs}s",
    "time.sleep(POLL_INTERVAL)",
    "org.junit.runners.model.TestTimedOutException",
    "test timed out after {secs} seconds",
    timeout=True,
)
# Services some areas of the suite depend on: when one is down, only its tests fail.
SERVICE_PROFILES: dict[str, FailureProfile] = {
    "search": FailureProfile(
        "elasticsearch.exceptions.ConnectionError",
        "ConnectionError(<urllib3.connection.HTTPConnection object at 0x7f3a2c1d9e50>: Failed "
        "to establish a new connection: [Errno 111] Connection refused)",
        "hits = search_client.search(index='products', q=query)",
        "co.elastic.clients.transport.TransportException",
        "node: http://localhost:9200/, status: 503, [es/search] Failed: [connection_refused]",
    ),
    "cache": FailureProfile(
        "redis.exceptions.ConnectionError",
        "Error 111 connecting to localhost:6379. Connection refused.",
        "cache.set(key, value, timeout=60)",
        "io.lettuce.core.RedisConnectionException",
        "Unable to connect to localhost/<unresolved>:6379",
    ),
    "emails": FailureProfile(
        "smtplib.SMTPServerDisconnected",
        "Connection unexpectedly closed",
        "connection.send_messages([message])",
        "org.springframework.mail.MailSendException",
        "Mail server connection failed; nested exception is java.net.ConnectException: "
        "Connection refused",
    ),
    "payments": FailureProfile(
        "stripe.error.APIConnectionError",
        "Unexpected error communicating with Stripe. If this problem persists, let us know at "
        "support@stripe.com.",
        "intent = stripe.PaymentIntent.create(amount=amount, currency='eur')",
        "com.stripe.exception.ApiConnectionException",
        "IOException during API request to Stripe (http://localhost:12111): Connection refused",
    ),
    "media": FailureProfile(
        "botocore.exceptions.EndpointConnectionError",
        'Could not connect to the endpoint URL: "http://localhost:9000/media"',
        "storage.save(name, ContentFile(data))",
        "software.amazon.awssdk.core.exception.SdkClientException",
        "Unable to execute HTTP request: Connect to localhost:9000 failed: Connection refused",
    ),
}
# Areas of AREAS whose tests use each service.
SERVICE_AREAS: dict[str, tuple[str, ...]] = {
    "search": ("search", "catalog", "recommendations", "feeds"),
    "cache": ("cache", "sessions", "rate_limit", "tasks"),
    "emails": ("emails", "notifications", "accounts"),
    "payments": ("payments", "gift_cards", "subscriptions"),
    "media": ("media", "invoices", "reports"),
}


def draw_values(rng: random.Random) -> dict[str, object]:
    """Fresh numbers for a failure message template (ids, timeouts, counts)."""
    n = rng.randint(1, 4)
    d1 = rng.randint(2, 28)
    x = rng.randint(1000, 99999)
    return {
        "secs": rng.choice((2.0, 5.0, 10.0, 30.0)),
        "order": rng.randint(10000, 99999),
        "port": rng.choice((9200, 8025, 8000, 4566)),
        "n": n,
        "m": n + 1,
        "pid": rng.randint(100, 9999),
        "pid2": rng.randint(100, 9999),
        "txn": rng.randint(10**5, 10**7),
        "d1": d1,
        "d2": d1 + 1,
        "x": f"{x / 100 + 0.1:.2f}",
        "y": f"{x / 100:.2f}",
    }


def build_cases(
    rng: random.Random, *, count: int, added: int, flavour: str, repo: str
) -> tuple[list[Case], list[Case]]:
    """Return ``count`` distinct cases present from the start and ``added`` in a new module."""
    org, project = (re.sub(r"[^a-z0-9]", "", part.lower()) or "x" for part in repo.split("/", 1))
    slots = []  # (area, stem or None for module-level functions, layer)
    for layer in _LAYERS:
        for area in AREAS[:-1]:
            slots.extend((area, stem, layer) for stem in (*area[1], None))
    classes = max(8, min(len(slots), round(count / 10)))
    weights = [layer[2] / (2 if stem is None else 1) for _, stem, layer in slots]
    chosen: list[tuple] = []
    while len(chosen) < classes:  # weighted sampling without replacement
        slot = rng.choices(slots, weights)[0]
        if slot not in chosen:
            chosen.append(slot)
    base = _fill(rng, chosen, count, flavour, org, project)
    new = _fill(rng, [(ADDED_AREA, ADDED_AREA[1][0], _LAYERS[0])], added, flavour, org, project)
    return base, new


def _fill(
    rng: random.Random, slots: list[tuple], count: int, flavour: str, org: str, project: str
) -> list[Case]:
    share = [rng.lognormvariate(0, 0.6) for _ in slots]
    total = sum(share)
    sizes = [1 + int((count - len(slots)) * s / total) for s in share]
    for i in range(count - sum(sizes)):
        sizes[i % len(sizes)] += 1
    cases = []
    next_line: dict[str, int] = {}  # classes of one module follow each other
    for (area, stem, layer), size in zip(slots, sizes, strict=True):
        area_name, _, nouns = area
        file = f"tests/{layer[0]}test_{area_name}.py"
        if flavour == "surefire":
            simple = (
                f"{stem or _camel(area_name, upper=True)}{layer[3]}{'' if stem else 'Smoke'}Test"
            )
            classname = f"com.{org}.{project}.{area_name.replace('_', '')}.{simple}"
            file = f"src/test/java/{classname.rsplit('.', 1)[0].replace('.', '/')}/{simple}.java"
        else:
            classname = file[:-3].replace("/", ".") + (f".Test{stem}{layer[3]}" if stem else "")
        seen: set[str] = set()
        line = next_line.get(file, 0) + rng.randint(12, 40)
        while len(seen) < size:
            func = f"test_{rng.choice(_VERBS)}_{rng.choice(nouns)}{rng.choice(_SUFFIXES)}"
            if flavour == "surefire":
                func = _camel(func[5:], upper=False)
            name = func
            if rng.random() < 0.08:
                if flavour == "surefire":
                    name = f"{func}(String)[{rng.randint(1, 6)}]"
                else:
                    name = f"{func}[{rng.choice(_PARAMS)}]"
            if name in seen:
                continue
            seen.add(name)
            median = min(60.0, layer[1] * rng.lognormvariate(0, 1.0))
            cases.append(
                Case(f"{classname}::{name}", classname, name, file, line, func, bool(stem), median)
            )
            line += rng.randint(6, 30)
        next_line[file] = line
    return cases


def _camel(snake: str, *, upper: bool) -> str:
    words = [w for w in snake.split("_") if w]
    text = "".join(w[:1].upper() + w[1:] for w in words)
    return text if upper else text[:1].lower() + text[1:]


def renamed(case: Case, flavour: str) -> Case:
    """The same test after someone gave it a more descriptive name."""
    func = f"{case.func}_updates_totals" if flavour == "pytest" else f"{case.func}UpdatesTotals"
    name = func + case.name[len(case.func) :]
    return Case(
        f"{case.classname}::{name}", case.classname, name, case.file, case.line, func,
        case.in_class, case.median,
    )  # fmt: skip


def jitter(rng: random.Random, median: float) -> list[float]:
    """Per-result durations around a test's median (log-normal, sigma 0.25)."""
    return [median * math.exp(rng.gauss(0, 0.25)) for _ in range(DURATION_VARIANTS)]

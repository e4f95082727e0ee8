"""Tests of what ships beside the code: the image, the compose stack, monitoring, Kubernetes."""

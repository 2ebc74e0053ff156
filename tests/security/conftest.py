# Security tests reuse the scenario fixtures: provisioned gateway processes and pjsua2 apps.
from __future__ import annotations

from tests.interop.conftest import sip_ua  # noqa: F401 - the pjsua2 app factory
from tests.scenarios.conftest import make_env  # noqa: F401 - provisioned gateway processes

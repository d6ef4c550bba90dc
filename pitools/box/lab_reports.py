"""The nightly reports inside ``pitools lab``: ``/pitools/box/reports/`` serves outputs/.

Jupyter's own ``/files/`` serves HTML under a ``sandbox`` Content-Security-Policy: the page
gets an opaque origin, so the browser does not send the login cookie with its requests and
the shared plotly.js in ``outputs/assets/`` answers with a redirect to the login page — the
charts stay blank. This handler serves only the outputs folder, only to a logged-in user
(the same authentication and authorization as ``/files/``), without the sandbox, so a
report loads its assets like it does from disk. The reports are the box's own generated
pages; the notebooks that produced them already ran with the user's rights.

`pitools lab` enables it (``ServerApp.jpserver_extensions``); open
``http://<pi>:8888/pitools/box/reports/`` for the runs index.
"""

from __future__ import annotations

from pathlib import Path

from jupyter_server.base.handlers import AuthenticatedFileHandler, JupyterHandler
from jupyter_server.utils import url_path_join

__all__ = ["REPORTS_PATH", "ReportsHandler"]

REPORTS_PATH = "/pitools/box/reports/"


class ReportsHandler(AuthenticatedFileHandler):
    """outputs/ behind the login, without the ``sandbox`` CSP of ``/files/``."""

    @property
    def content_security_policy(self) -> str:
        return JupyterHandler.content_security_policy.fget(self)  # frame-ancestors 'self' + report-uri

    def check_xsrf_cookie(self) -> None:
        # Jupyter's check refuses a GET without a same-origin Referer, which is every
        # bookmarked or typed-in report URL. Browsers say where a request comes from in
        # Sec-Fetch-Site: a typed URL ("none") and the report's own assets ("same-origin")
        # pass; another site including these files (cross-site inclusion) still gets
        # Jupyter's check. The login is required either way (get()).
        if self.request.headers.get("Sec-Fetch-Site") in ("none", "same-origin"):
            return None
        return super().check_xsrf_cookie()


def _jupyter_server_extension_points():
    return [{"module": "pitools.box.lab_reports"}]


def _load_jupyter_server_extension(serverapp) -> None:
    outputs = Path(serverapp.root_dir) / "outputs"
    outputs.mkdir(exist_ok=True)
    route = url_path_join(serverapp.base_url, REPORTS_PATH, "(.*)")
    serverapp.web_app.add_handlers(".*$", [(route, ReportsHandler, {"path": str(outputs),
                                                                     "default_filename": "index.html"})])
    serverapp.log.info("pitools: nightly reports at %s", url_path_join(serverapp.base_url, REPORTS_PATH))

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.urls import path, re_path

from accounts import views as account_views
from accounts.views import ThrottledLoginView
from aikore_site import views
from aikore_site.api import api, not_found
from monitoring.views import metrics
from proxy import views as proxy_views


def ping(request: HttpRequest) -> HttpResponse:
    """Trivial liveness answer (no DB, no auth): the baseline view of bench/api.py."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("_aikore/ping", ping, name="ping"),
    # App origins (nginx routes these fixed paths there, with X-AiKore-Origin; never on the control
    # plane: aikore_site.middleware.OriginGuard).
    path("_aikore/app/auth", proxy_views.app_auth, name="app-auth"),
    path("_aikore/app/signin", proxy_views.app_signin, name="app-signin"),
    path("_aikore/app/redeem", proxy_views.app_redeem, name="app-redeem"),
    path("_aikore/app/status", proxy_views.app_status, name="app-status"),
    path("_aikore/app/desktop", proxy_views.app_desktop, name="app-desktop"),
    # The control plane's side of reaching apps.
    path("_aikore/handoff", proxy_views.handoff, name="handoff"),
    path("_aikore/start/<slug:slug>/", proxy_views.start_page, name="start-page"),
    path("_aikore/to-apps", proxy_views.to_apps, name="to-apps"),
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("login/verify/", account_views.VerifySecondFactorView.as_view(), name="login-verify"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/two-factor/", account_views.two_factor, name="two-factor"),
    # The admin uses the same throttled login page.
    path("admin/login/", ThrottledLoginView.as_view(), name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    re_path(r"^api/(?P<rest>.*)$", not_found),
    path("metrics", metrics, name="metrics"),
    path("", views.dashboard, name="dashboard"),
]

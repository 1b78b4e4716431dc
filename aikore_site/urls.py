from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.urls import path

from accounts.views import RateLimitedLoginView
from aikore_site import views
from aikore_site.api import api
from monitoring.views import metrics
from proxy.views import auth_check

admin.site.site_header = "AiKore administration"
admin.site.site_title = "AiKore admin"
admin.site.site_url = "/"



def ping(request: HttpRequest) -> HttpResponse:
    """Trivial liveness answer (no DB, no auth): the baseline view of bench/api.py."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("_aikore/ping", ping, name="ping"),
    # nginx auth_request target (internal in nginx: only subrequests reach it through the proxy).
    path("_aikore/auth", auth_check, name="proxy-auth"),
    path("login/", RateLimitedLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The admin uses the same rate-limited login page.
    path("admin/login/", RateLimitedLoginView.as_view(), name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("metrics", metrics, name="metrics"),
    path("", views.dashboard, name="dashboard"),
]

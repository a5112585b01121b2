from django.contrib.auth import views as auth_views
from django.urls import path

from portal.views import pages

app_name = "portal"

urlpatterns = [
    path("", pages.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dashboard/", pages.dashboard, name="dashboard"),
]

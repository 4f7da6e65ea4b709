from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("subscribe", views.subscribe),
    path("report", views.report),
    path("slow", views.slow),
    path("maintenance", views.maintenance),
]

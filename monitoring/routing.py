from django.urls import path

from monitoring import consumers

websocket_urlpatterns = [
    path("ws/system/", consumers.SystemConsumer.as_asgi()),
]

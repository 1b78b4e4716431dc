from django.urls import path

from terminals import consumers

websocket_urlpatterns = [
    path("ws/instances/<int:instance_id>/terminal/", consumers.TerminalConsumer.as_asgi()),
]

from django.urls import path

from instances import consumers

websocket_urlpatterns = [
    path("ws/instances/", consumers.InstanceStatusConsumer.as_asgi()),
    path("ws/instances/<int:instance_id>/logs/", consumers.InstanceLogConsumer.as_asgi()),
]

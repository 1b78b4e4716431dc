from django.dispatch import Signal

instance_event = Signal()

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from notifications import service
from notifications.models import ALL_KINDS, INSTANCE_KINDS, Delivery, Event, EventKind, InstancePreference, Target


class TargetAdminForm(forms.ModelForm):
    """The URL is a secret: the form never renders it back. Left blank on an edit, the stored URL
    is kept; an environment target's URL is not editable at all."""

    url = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                          help_text="An Apprise URL, e.g. json://host:port/path or ntfy://topic. "
                                    "Stored URLs are never shown; leave blank to keep the current one.")
    kinds = forms.MultipleChoiceField(choices=EventKind.choices, widget=forms.CheckboxSelectMultiple,
                                      required=False, initial=list(ALL_KINDS))

    class Meta:  # the model's clean() then runs the same checks as the API
        model = Target
        fields = ("name", "url", "enabled", "kinds")

    def clean_url(self) -> str:
        url = self.cleaned_data.get("url", "").strip()
        if not url:
            if self.instance.pk:
                return self.instance.url
            raise ValidationError("A target URL is required.")
        if self.instance.pk and self.instance.source == Target.Source.ENV and url != self.instance.url:
            raise ValidationError("This target comes from AIKORE_NOTIFY_URLS; change the URL there.")
        return url


@admin.register(Target)
class TargetAdmin(admin.ModelAdmin):
    form = TargetAdminForm
    list_display = ("name", "masked_url", "source", "enabled", "last_status", "last_attempt_at", "last_error")
    list_filter = ("source", "enabled", "last_status")
    search_fields = ("name",)
    readonly_fields = ("masked_url", "source", "last_status", "last_error", "last_attempt_at", "last_success_at")
    actions = ("send_test",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        service.sync_env_targets()
        return super().get_queryset(request)

    def has_delete_permission(self, request: HttpRequest, obj: Target | None = None) -> bool:
        if obj is not None and obj.source == Target.Source.ENV:
            return False
        return super().has_delete_permission(request, obj)

    @admin.action(description="Send a test notification")
    def send_test(self, request: HttpRequest, queryset: QuerySet) -> None:
        for target in queryset:
            ok, error = service.send_test(target)
            if ok:
                self.message_user(request, f"{target.name}: test sent.", messages.SUCCESS)
            else:
                self.message_user(request, f"{target.name}: not delivered: {error}", messages.ERROR)


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ("target", "status", "attempts", "error", "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "level", "title", "instance_name", "suppressed_by")
    list_filter = ("kind", "level")
    search_fields = ("title", "message", "instance_name")
    readonly_fields = ("created_at", "kind", "level", "subject", "instance", "instance_name", "title", "message",
                       "details", "suppressed_by")
    inlines = (DeliveryInline,)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("updated_at", "event", "target", "status", "attempts", "error")
    list_filter = ("status", "target")
    readonly_fields = ("event", "target", "status", "attempts", "error", "created_at", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class InstancePreferenceForm(forms.ModelForm):
    muted_kinds = forms.MultipleChoiceField(choices=[(k.value, k.label) for k in INSTANCE_KINDS],
                                            widget=forms.CheckboxSelectMultiple, required=False,
                                            help_text="Event kinds this instance does not send.")

    class Meta:
        model = InstancePreference
        fields = ("instance", "muted_kinds")


@admin.register(InstancePreference)
class InstancePreferenceAdmin(admin.ModelAdmin):
    form = InstancePreferenceForm
    list_display = ("instance", "muted_kinds", "updated_at")

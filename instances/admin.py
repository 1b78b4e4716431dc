from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from instances.models import Instance, InstanceStatus, ServiceUnavailable

STATUS_COLOURS = {
    InstanceStatus.RUNNING: "#1a7f37",
    InstanceStatus.STARTING: "#9a6700",
    InstanceStatus.INSTALLING: "#9a6700",
    InstanceStatus.STOPPING: "#9a6700",
    InstanceStatus.FAILED: "#cf222e",
    InstanceStatus.STOPPED: "#57606a",
}


class InstanceAdminForm(forms.ModelForm):
    """The admin's edit form: Instance.clean_changes() validates (the same rules as the API, all
    bad fields at once) and save_model() applies through Instance.update_settings()."""

    class Meta:
        model = Instance
        fields = Instance.EDITABLE_FIELDS

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.instance.pk and not self.errors:
            current = Instance.objects.get(pk=self.instance.pk)
            try:
                current.clean_changes({field: data.get(field) for field in self.changed_data})
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    self.add_error(field if field in self.fields else None, errors)
        return data


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    form = InstanceAdminForm
    list_display = ("name", "status_badge", "base_blueprint", "parent", "gpus", "port", "pid", "autostart",
                    "persistent_mode", "updated_at")
    list_filter = ("status", "base_blueprint", "autostart", "persistent_mode")
    search_fields = ("name", "slug", "base_blueprint", "launch_args")
    readonly_fields = ("slug", "base_blueprint", "parent", "status", "install_step", "install_progress", "pid",
                       "public_port", "vnc_port", "vnc_display", "started_at", "stopped_at", "exit_code",
                       "error_message", "restart_count", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "slug", "base_blueprint", "gpu_ids", "port", "autostart", "persistent_mode",
                           "launch_args", "output_path", "allowed_origins")}),
        ("Environment", {"fields": ("python_version", "torch_variant", "git_ref", "parent"),
                         "description": "A satellite runs its parent's code and environment: change these on "
                                        "the parent. Changes apply at the next start (the install runs again)."}),
        ("Observed state", {"fields": ("status", "install_step", "install_progress", "pid", "public_port", "vnc_port",
                                       "vnc_display", "started_at",
                                       "stopped_at", "exit_code", "error_message", "restart_count")}),
        ("Times", {"fields": ("created_at", "updated_at")}),
    )
    actions = ("start_selected", "stop_selected", "restart_selected", "update_selected", "rebuild_selected",
               "delete_selected_instances")

    def save_model(self, request: HttpRequest, obj: Instance, form: forms.ModelForm, change: bool) -> None:
        """Apply the edit through Instance.update_settings() (restart if needed, safe rename),
        never by writing the row directly."""
        current = Instance.objects.get(pk=obj.pk)
        changes = {field: form.cleaned_data[field] for field in form.changed_data if field in Instance.EDITABLE_FIELDS}
        try:
            result = current.update_settings(changes)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return
        except ServiceUnavailable as exc:  # saved; the restart that applies it could not be asked for
            obj.refresh_from_db()
            self.message_user(request, f"Saved, but not restarted: {exc}", messages.WARNING)
            return
        except OSError as exc:  # the rename of its directory
            self.message_user(request, f"Not saved: {exc.strerror or exc}", messages.ERROR)
            return
        obj.refresh_from_db()
        self.message_user(request, result["message"], messages.INFO)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Creation needs the blueprint copy and validation of create_instance(): use the dashboard,
        # the API or the CLI.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Django's own delete would drop the row alone (the processes, the supervisord group and the
        # directory would stay) and inside a transaction: the "Delete selected instances" action
        # goes through Instance.delete_everything() as every other entry point does.
        return False

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Instance) -> str:
        return format_html('<b style="color:{}">{}</b>', STATUS_COLOURS.get(obj.status, "#57606a"), obj.status)

    @admin.display(description="GPUs", ordering="gpu_ids")
    def gpus(self, obj: Instance) -> str:
        return obj.gpu_ids or "all"

    def _run(self, request: HttpRequest, queryset: QuerySet[Instance], action: str) -> None:
        try:
            Instance.require_supervisor()
        except ServiceUnavailable as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        for instance in queryset:
            getattr(instance, action)()
        self.message_user(request, f"{action.capitalize()} queued for {queryset.count()} instance(s).",
                          messages.SUCCESS)

    @admin.action(description="Start selected instances")
    def start_selected(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._run(request, queryset, "start")

    @admin.action(description="Stop selected instances")
    def stop_selected(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._run(request, queryset, "stop")

    @admin.action(description="Restart selected instances")
    def restart_selected(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._run(request, queryset, "restart")

    def _env_action(self, request: HttpRequest, queryset: QuerySet[Instance], method: str) -> None:
        for instance in queryset:
            try:
                result = getattr(instance, method)()
            except (ValidationError, ServiceUnavailable) as exc:
                reason = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                self.message_user(request, f"{instance.name}: {reason}", messages.ERROR)
            else:
                self.message_user(request, result["message"], messages.SUCCESS)

    @admin.action(description="Update selected instances (fetch the code, install what changed)")
    def update_selected(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._env_action(request, queryset, "update_app")

    @admin.action(description="Rebuild the environment of selected instances")
    def rebuild_selected(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._env_action(request, queryset, "rebuild_env")

    @admin.action(description="Delete selected instances (stopped first; folders with your files go to the trash)")
    def delete_selected_instances(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        # Satellites first: their parent can't go while they exist.
        for instance in sorted(queryset, key=lambda i: i.parent_id is None):
            try:
                plan = instance.deletion_plan()
                instance.delete_everything()
            except ValidationError as exc:
                self.message_user(request, f"{instance.name}: {' '.join(exc.messages)}", messages.ERROR)
            except OSError as exc:
                self.message_user(request, f"{instance.name}: deleting failed: {exc}", messages.ERROR)
            else:
                where = f"; its folder is in {plan['trash_dir']}" if plan["trash_default"] else ""
                self.message_user(request, f"Deleted {instance.name}{where}.", messages.SUCCESS)

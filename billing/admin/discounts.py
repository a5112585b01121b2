"""Discounts back office: billing staff create coupons and promotion codes, see redemptions, and attach a
coupon to a customer with a preview of the next invoice — through billing.services.discounts, never by editing a
discount here. A redeemed coupon is read-only (its terms were sold; create a new one instead).
Permissions: portal/migrations/0009_discount_groups.py."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from billing.admin.base import OwnPages, ReadOnlyAdmin, ReadOnlyInline, money
from billing.exceptions import BillingError
from billing.models import Coupon, CouponAmount, Discount, PromotionCode
from billing.services.discounts import discount_end, discount_preview, discount_redeem, interleave
from subscriptions import policy
from subscriptions.models import LIVE_STATUSES, Customer, Subscription


class CouponAmountInline(admin.TabularInline):
    model = CouponAmount
    extra = 1

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and not (obj and obj.times_redeemed)

    def has_add_permission(self, request, obj=None) -> bool:
        return super().has_add_permission(request, obj) and not (obj and obj.times_redeemed)

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not (obj and obj.times_redeemed)


class PromotionCodeInline(admin.TabularInline):
    model = PromotionCode
    extra = 1
    fields = ["code", "is_active", "expires_at", "max_redemptions", "first_time_only", "times_redeemed"]
    readonly_fields = ["times_redeemed"]
    can_delete = False


class DiscountInline(ReadOnlyInline):
    model = Discount
    fields = ["customer", "subscription", "promotion_code", "starts_at", "ends_at", "periods_total", "created_by"]
    readonly_fields = fields
    verbose_name_plural = "Redemptions"


@admin.register(Coupon)
class CouponAdmin(admin.ModelAdmin):
    list_display = ["name", "value", "duration_text", "times_redeemed", "max_redemptions", "redeem_by", "is_active"]
    list_filter = ["kind", "duration", "is_active"]
    search_fields = ["name", "promotion_codes__code"]
    filter_horizontal = ["packages"]
    inlines = [CouponAmountInline, PromotionCodeInline, DiscountInline]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.times_redeemed:
            return [*Coupon.FROZEN_WHEN_REDEEMED, "packages", "times_redeemed"]
        return ["times_redeemed"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not (obj and obj.times_redeemed)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("amounts")

    @admin.display(description="value")
    def value(self, coupon) -> str:
        if coupon.kind == "percent":
            return f"{coupon.percent_off.normalize():f} %"
        return ", ".join(money(a.amount_minor, a.currency) for a in coupon.amounts.all()) or "—"

    @admin.display(description="duration")
    def duration_text(self, coupon) -> str:
        if coupon.duration == "repeating":
            return f"{coupon.duration_periods} billing periods"
        return coupon.get_duration_display()


@admin.register(PromotionCode)
class PromotionCodeAdmin(admin.ModelAdmin):
    list_display = ["code", "coupon", "is_active", "expires_at", "times_redeemed", "max_redemptions", "first_time_only"]
    list_filter = ["is_active", "first_time_only"]
    list_select_related = ["coupon"]
    search_fields = ["code", "coupon__name"]
    readonly_fields = ["times_redeemed"]

    def get_readonly_fields(self, request, obj=None):
        # A redeemed code keeps its text and coupon (customers have used it); limits and expiry can still change.
        return ["code", "coupon", "times_redeemed"] if obj is not None and obj.times_redeemed else ["times_redeemed"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not (obj and obj.times_redeemed)


class AttachForm(forms.Form):
    customer = forms.ModelChoiceField(queryset=Customer.objects.order_by("name"))
    subscription = forms.ModelChoiceField(
        queryset=Subscription.objects.filter(status__in=LIVE_STATUSES).select_related("customer", "package"),
        help_text="The subscription the discount applies to (the next invoice is previewed for it).",
    )
    coupon = forms.ModelChoiceField(queryset=Coupon.objects.filter(is_active=True))

    def clean(self):
        data = super().clean()
        if (
            data.get("subscription")
            and data.get("customer")
            and data["subscription"].customer_id != data["customer"].pk
        ):
            raise forms.ValidationError("That subscription belongs to another customer.")
        return data


@admin.register(Discount)
class DiscountAdmin(OwnPages, ReadOnlyAdmin):
    """Redemptions; "Attach a coupon" previews the next invoice and attaches through the service."""

    list_display = ["coupon", "customer", "subscription", "promotion_code", "starts_at", "ends_at", "periods_total"]
    list_select_related = ["coupon", "customer", "subscription", "promotion_code"]
    search_fields = ["customer__name", "coupon__name", "promotion_code__code"]
    list_filter = ["coupon"]
    actions = ["end_at_period_end"]
    change_list_template = "admin/billing/discount/change_list.html"

    own_pages = (("attach/", "attach_view", "billing_discount_attach"),)

    def has_attach_permission(self, request) -> bool:
        return policy.staff_allows(request.user, policy.Action.DISCOUNTS_ATTACH, in_admin=True)

    def attach_view(self, request):
        """Step 1: choose customer, subscription and coupon → the next invoice with the discount (every check
        redeeming makes). Step 2: confirm → `discount_redeem(coupon_id=…)`."""
        if not self.has_attach_permission(request):
            raise PermissionDenied
        form = AttachForm(request.POST or request.GET or None)
        preview = rows = None
        if request.method == "POST" and form.is_valid():
            subscription = form.cleaned_data["subscription"]
            coupon = form.cleaned_data["coupon"]
            try:
                if request.POST.get("confirm"):
                    discount_redeem(
                        customer=form.cleaned_data["customer"],
                        subscription=subscription,
                        coupon_id=coupon.pk,
                        actor=request.user,
                    )
                    messages.success(request, f"{coupon.name} attached to {subscription}.")
                    return HttpResponseRedirect(reverse("admin:billing_discount_changelist"))
                preview = discount_preview(subscription=subscription, coupon_id=coupon.pk)
                rows = interleave(list(preview.lines), list(preview.discount_lines))
            except BillingError as error:
                messages.error(request, error.message)
        context = {
            **self.admin_site.each_context(request),
            "title": "Attach a coupon",
            "form": form,
            "preview": preview,
            "rows": rows,
            "money": money,
            "opts": self.model._meta,
        }
        if preview is not None:
            context["amounts"] = {
                "subtotal": money(preview.subtotal_minor, preview.currency),
                "tax": money(preview.tax_minor, preview.currency),
                "total": money(preview.total_minor, preview.currency),
                "discount": money(preview.discount_minor, preview.currency),
            }
            context["row_amounts"] = [
                (
                    line.description if line else discount.description,
                    money((line or discount).amount_minor, preview.currency),
                    bool(discount),
                )
                for line, discount in rows
            ]
        return TemplateResponse(request, "admin/billing/discount/attach.html", context)

    @admin.action(description="End at the period boundary (now or the next one)", permissions=["end"])
    def end_at_period_end(self, request, queryset):
        for discount in queryset:
            discount_end(discount_id=discount.pk, actor=request.user)
        messages.success(request, f"{queryset.count()} discount(s) end at their next period boundary.")

    def has_end_permission(self, request) -> bool:
        return self.has_attach_permission(request)

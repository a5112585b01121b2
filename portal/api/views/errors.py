from django.http import JsonResponse

from portal.api.exceptions import error_body


def not_found(request, *args, **kwargs):
    return JsonResponse(error_body("not_found", "There is no such API endpoint.", None), status=404)

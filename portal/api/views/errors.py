from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from portal.api.exceptions import error_body


# Exempt from CSRF: it changes nothing, and an unsafe method with a session cookie on an unknown path must still get
# the API's JSON 404, not Django's HTML "CSRF cookie not set" page.
@csrf_exempt
def not_found(request, *args, **kwargs):
    return JsonResponse(error_body("not_found", "There is no such API endpoint.", None), status=404)

import httpx

from covertype.http_errors import detail


def test_detail_is_the_detail_field_of_a_fastapi_error():
    response = httpx.Response(400, json={"detail": "All data was collected"})
    assert detail(response) == "All data was collected"
    assert detail(httpx.Response(422, json={"detail": [{"msg": "x"}]})) == "[{'msg': 'x'}]"


def test_detail_of_any_other_body_is_its_text():
    for response in (
        httpx.Response(502, text="<html>Bad gateway</html>"),  # a proxy's page, not JSON
        httpx.Response(500, json={"error": "boom"}),
        httpx.Response(500, json=["not", "an", "object"]),
        httpx.Response(503, text=""),
    ):
        assert detail(response) == response.text

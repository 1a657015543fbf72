"""An AWS Lambda Powertools app as its users write it for an HTTP API or a function URL (payload
2.0): Logger with inject_lambda_context, an APIGatewayHttpResolver, cookies and binary bodies."""

import base64
import hashlib

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.shared.cookies import Cookie

logger = Logger()  # service: POWERTOOLS_SERVICE_NAME
app = APIGatewayHttpResolver()
# A 1x1 transparent PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


@app.get("/hello/<name>")
def hello(name: str) -> dict:
    logger.info("saying hello", extra={"who": name})
    event = app.current_event
    return {"message": f"hello {name}", "path": event.raw_path, "cookies": event.cookies}


@app.post("/orders")
def create_order() -> Response:
    return Response(
        status_code=201,
        content_type="application/json",
        body={
            "created": app.current_event.json_body,
            "query": app.current_event.query_string_parameters,
        },
        cookies=[Cookie(name="last_order", value="A-1", path="/", secure=False)],
    )


@app.get("/pixel.png")
def pixel() -> Response:
    return Response(status_code=200, content_type="image/png", body=PIXEL)


@app.post("/digest")
def digest() -> dict:
    event = app.current_event
    raw = event.body or ""
    data = base64.b64decode(raw) if event.is_base64_encoded else raw.encode()
    return {
        "base64": event.is_base64_encoded,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


@app.get("/boom")
def boom() -> dict:
    raise RuntimeError("kaboom from an HTTP API route")


@logger.inject_lambda_context(log_event=False)
def handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)

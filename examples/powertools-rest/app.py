"""An AWS Lambda Powertools app as its users write it for API Gateway (REST, payload 1.0):
Logger with inject_lambda_context, Metrics in EMF on stdout, an APIGatewayRestResolver."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()  # service: POWERTOOLS_SERVICE_NAME
metrics = Metrics()  # namespace: POWERTOOLS_METRICS_NAMESPACE
app = APIGatewayRestResolver()


@app.get("/hello/<name>")
def hello(name: str) -> dict:
    logger.info("saying hello", extra={"who": name})
    metrics.add_metric(name="Greetings", unit=MetricUnit.Count, value=1)
    return {"message": f"hello {name}", "request_id": app.lambda_context.aws_request_id}


@app.post("/orders")
def create_order() -> Response:
    order = app.current_event.json_body
    return Response(
        status_code=201,
        content_type="application/json",
        body={"created": order, "query": app.current_event.query_string_parameters},
        headers={"x-order": "yes"},
    )


@app.get("/boom")
def boom() -> dict:
    raise RuntimeError("kaboom from a route")


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)

"""A Flask app on Lambda through serverless-wsgi, unchanged but for the handler."""

import serverless_wsgi
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(hello="flask", agent=request.headers.get("User-Agent"))


@app.route("/echo", methods=["POST"])
def echo():
    return jsonify(json=request.get_json(), args=request.args.to_dict()), 201


@app.get("/boom")
def boom():
    raise KeyError("kaboom from Flask")


def handler(event, context):
    return serverless_wsgi.handle_request(app, event, context)

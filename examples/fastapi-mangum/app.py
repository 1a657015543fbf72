"""A FastAPI app on Lambda through Mangum, unchanged but for the handler line."""

from fastapi import FastAPI, HTTPException
from mangum import Mangum
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float


ITEMS = {1: Item(name="apple", price=0.5)}


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None) -> dict:
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="no such item")
    return {"id": item_id, "item": ITEMS[item_id].model_dump(), "q": q}


@app.post("/items", status_code=201)
def create_item(item: Item) -> dict:
    return {"created": item.model_dump()}


@app.get("/boom")
def boom() -> dict:
    raise ValueError("kaboom from FastAPI")


handler = Mangum(app, lifespan="off")

"""The yardstick of ``bench/bursts.py``: a bare FastAPI endpoint that validates a name and
INSERTs one row, on the same PostgreSQL and with the same engine settings as the API's
(``woostore_shared.db.Database``). Whatever POST /stores costs beyond it is WooStore's.

Served by uvicorn in its own process: ``BENCH_DATABASE_URL=... uvicorn bench.bare_insert:app``.
"""

from __future__ import annotations

import os
import uuid

from fastapi import FastAPI, status
from pydantic import BaseModel, Field
from sqlalchemy import text

from woostore_shared.db import Database

BARE_TABLE = "CREATE TABLE bare_stores (id uuid PRIMARY KEY, name text NOT NULL)"
database = Database(os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://"))
app = FastAPI()


class Body(BaseModel):
    name: str = Field(min_length=1, max_length=50)


@app.post("/bare", status_code=status.HTTP_202_ACCEPTED)
async def insert_one(body: Body) -> dict[str, str]:
    row = {"id": uuid.uuid4(), "name": body.name}
    async with database.engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO bare_stores (id, name) VALUES (:id, :name)"), row
        )
    return {"id": str(row["id"]), "name": body.name}

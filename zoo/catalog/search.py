"""Full-text search of the catalog: ``zoo list --search TEXT``, ``zoo.list_models(search=...)``.

Each model has one document in the search index (`tables.SEARCH_INDEX`), in three parts ranked apart: its
name; its keywords (tags, tasks, plugin namespace, weights enum and tags); and its words (the string values of
the model's and its weights' metadata, URLs left out: paper names and ids, notes, licences, torchvision's
weights docs). Category lists are left out too: ImageNet's 1,000 names would match everything. Text is split
into words here, the same way for documents and queries (runs of letters and digits, lowercase: an underscore
or a dot separates them, so ``vision_transformer`` is two words); neither database stems them or drops any
(FTS5's ``unicode61`` tokenizer, PostgreSQL's ``simple`` configuration), so both find the same models.

A query matches the models whose document has every word of it, each as a prefix (``resnet5`` finds
``resnet50``, ``transformer`` finds ``transformers``), ranked by relevance (bm25 on SQLite, ts_rank on
PostgreSQL; a match in the name weighs most), a model named exactly the text first. Words reach the database as
bound parameters, each quoted (FTS5 and tsquery syntax in user text is only text).

The index is an FTS5 virtual table on SQLite and a table of tsvectors with a GIN index on PostgreSQL, made by
migration 0010 and outside `tables.metadata`. Its rows come from the catalog's other tables: `refresh` remakes
them all in the sync's write transaction, after the models are written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, select, text

from zoo.catalog import tables
from zoo.errors import UsageError, excerpt

MAX_SEARCH = 200  # characters of search text
#: The weight of a match in the name, keywords and words: bm25's column weights, ts_rank's A, B and C.
_WEIGHTS = (10.0, 4.0, 1.0)
_WORD = re.compile(r"[^\W_]+")
_URL = re.compile(r"\S*://\S*")
_INDEX = tables.SEARCH_INDEX
_SQLITE = (f"CREATE VIRTUAL TABLE IF NOT EXISTS {_INDEX} USING fts5(name, keywords, words, "
           "tokenize='unicode61')",)
_POSTGRES = (f"CREATE TABLE IF NOT EXISTS {_INDEX} (model_id INTEGER PRIMARY KEY, document TSVECTOR NOT NULL)",
             f"CREATE INDEX IF NOT EXISTS ix_{_INDEX}_document ON {_INDEX} USING GIN (document)")


def words(value: str) -> list[str]:
    """The words of `value`, lowercase, in order: runs of letters and digits."""
    return _WORD.findall(value.lower())


def search_words(search: object) -> tuple[str, ...]:
    """The distinct words of the search text `search`; a one-line `UsageError` for text that is not a string,
    is longer than `MAX_SEARCH` characters or has no word."""
    if not isinstance(search, str) or len(search) > MAX_SEARCH:
        raise UsageError(f"search must be text of at most {MAX_SEARCH} characters, e.g. 'vision transformer', "
                         f"not {excerpt(search)}")
    found = tuple(dict.fromkeys(words(search)))
    if not found:
        raise UsageError(f"search text {excerpt(search)} has no words; search for words of letters or digits, "
                         "e.g. 'vision transformer'")
    return found


def create_index(conn: Connection) -> None:
    """Make the search index, empty, where it is missing."""
    for statement in _SQLITE if conn.dialect.name == "sqlite" else _POSTGRES:
        conn.execute(text(statement))


def refresh(conn: Connection) -> None:
    """Remake every model's document from the catalog's tables (the index made first where it is missing)."""
    create_index(conn)
    conn.execute(text(f"DELETE FROM {_INDEX}"))
    documents = [{"id": i, "name": name, "keywords": " ".join(keywords), "words": " ".join(found)}
                 for i, (name, keywords, found) in _documents(conn).items()]
    if not documents:
        return
    if conn.dialect.name == "sqlite":
        insert = f"INSERT INTO {_INDEX} (rowid, name, keywords, words) VALUES (:id, :name, :keywords, :words)"
    else:
        insert = (f"INSERT INTO {_INDEX} (model_id, document) VALUES (:id, "
                  "setweight(to_tsvector('simple', :name), 'A') || setweight(to_tsvector('simple', :keywords), 'B')"
                  " || setweight(to_tsvector('simple', :words), 'C'))")
    conn.execute(text(insert), documents)


def _documents(conn: Connection) -> dict[int, tuple[str, list[str], list[str]]]:
    """Each model's document by id: its name's words, its keywords and its words (`refresh`), each once."""
    m, p, w = tables.models, tables.plugins, tables.weights
    parts: dict[int, tuple[str, dict[str, None], dict[str, None]]] = {}
    for row in conn.execute(select(m.c.id, m.c.name, m.c.task, m.c.tags, m.c.meta, p.c.namespace).join(p)):
        keywords = dict.fromkeys(words(" ".join([*_strings(row.tags), row.task, row.namespace])))
        parts[row.id] = (" ".join(words(row.name)), keywords, dict.fromkeys(words(" ".join(_strings(row.meta)))))
    for row in conn.execute(select(w.c.model_id, w.c.enum_name, w.c.member_name, w.c.task, w.c.meta)):
        if row.model_id in parts:
            _, keywords, found = parts[row.model_id]
            keywords.update(dict.fromkeys(words(" ".join([row.enum_name or "", row.member_name, row.task or ""]))))
            found.update(dict.fromkeys(words(" ".join(_strings(row.meta)))))
    return {i: (name, list(keywords), list(found)) for i, (name, keywords, found) in parts.items()}


def _strings(value: Any) -> list[str]:
    """The strings in metadata `value`: itself, or those of a list's items or a mapping's values, where keys
    starting with an underscore are figures (metrics, operations, sizes) except ``_docs``; URLs left out."""
    if isinstance(value, str):
        return [_URL.sub(" ", value)]
    if isinstance(value, Mapping):
        return [s for key, item in value.items() if not str(key).startswith("_") or key == "_docs"
                for s in _strings(item)]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _strings(item)]
    return []


def relevance(conn: Connection, found: Iterable[str]) -> dict[int, float]:
    """The ids of the models whose document has every word of `found` (`search_words`), each as a prefix, with
    their rank: lower is more relevant."""
    if conn.dialect.name == "sqlite":
        query = " AND ".join(f'"{word}"*' for word in found)  # a word has no quote: _WORD
        rows = conn.execute(text(f"SELECT rowid, bm25({_INDEX}, {', '.join(map(str, _WEIGHTS))}) FROM {_INDEX} "
                                 f"WHERE {_INDEX} MATCH :query"), {"query": query})
        return {i: rank for i, rank in rows}
    query = " & ".join(f"'{word}':*" for word in found)
    weights = "{" + ", ".join(str(w / _WEIGHTS[0]) for w in (0.1, *reversed(_WEIGHTS))) + "}"  # D, C, B, A, to 1
    rows = conn.execute(text(f"SELECT model_id, ts_rank('{weights}', document, query) "
                             f"FROM {_INDEX}, to_tsquery('simple', :query) AS query WHERE document @@ query"),
                        {"query": query})
    return {i: -rank for i, rank in rows}


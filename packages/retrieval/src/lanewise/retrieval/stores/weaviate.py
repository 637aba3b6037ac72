"""``weaviate``: Weaviate through weaviate-client v4 (async API).

- One multi-tenant collection; each lanewise tenant is a Weaviate tenant
  (names outside Weaviate's ``[A-Za-z0-9_-]{1,64}`` are hashed), so tenants
  live in separate shards and no query can cross them.
- Vectors are self-provided (the configured embedder), HNSW with cosine
  distance; ``score = 1 - distance``.
- Metadata becomes typed properties (see :mod:`.weaviate_filters`), plus the
  exact JSON in ``metadata_json`` so reads return what was written.
- Batch import (``insert_many``) reports every object that failed, by index
  and id, in the raised error. Weaviate has no transactions: objects before a
  failing one may be written (the error says how many were).
- ``search_lexical`` is Weaviate's own BM25 on ``text`` (its ``word``
  tokenizer and statistics per tenant shard); the retriever fuses it with the
  vector search as for every store (``retrieval.mode``, ``fusion``, ``alpha``).
  ``consistency_level`` is ONE, QUORUM or ALL.
- The index version lives in a second multi-tenant collection; its bump is a
  read-modify-write (good enough to invalidate caches, not a lock).

Not verified against a server here (none can run on these machines): see
docs/weaviate.md for exactly what was and was not.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

from lanewise.core.errors import ConfigError, InvalidRequest, Unavailable, UpstreamError
from lanewise.core.factory import FactoryContext
from lanewise.core.protocols import Filter
from lanewise.core.types import Hit
from lanewise.retrieval.filters import parse_filter
from lanewise.retrieval.stores.batch import check_k, check_tenant, unit_vectors, validate_batch
from lanewise.retrieval.stores.weaviate_filters import (
    Folded,
    Leaf,
    Translator,
    all_of,
    encode_metadata,
    to_weaviate,
)

TENANT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
COLLECTION_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]{0,100}$")
CONSISTENCY = ("ONE", "QUORUM", "ALL")
ID_PROP, TEXT_PROP, META_PROP = "lw_id", "text", "metadata_json"
VERSION_UUID = uuid.UUID("6c616e65-7769-7365-2d76-657273696f6e")


def weaviate_tenant(tenant: str) -> str:
    if TENANT_NAME.match(tenant):
        return tenant
    return "t_" + hashlib.sha256(tenant.encode()).hexdigest()[:40]


def object_uuid(rid: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, "lanewise:" + rid)


class WeaviateStore:
    def __init__(
        self,
        *,
        url: str,
        dimension: int,
        collection: str = "LanewiseChunks",
        grpc_port: int = 50051,
        api_key: str | None = None,
        consistency_level: str | None = None,
        timeout_s: float = 10.0,
        retry_after_s: float = 5.0,
    ) -> None:
        if not COLLECTION_NAME.match(collection):
            raise ConfigError(
                f"retrieval.vector_store.collection = {collection!r} must match "
                f"{COLLECTION_NAME.pattern} (Weaviate class names start upper-case)"
            )
        if consistency_level is not None and consistency_level not in CONSISTENCY:
            raise ConfigError(
                f"retrieval.vector_store.consistency_level = {consistency_level!r}; "
                f"allowed: {', '.join(CONSISTENCY)}"
            )
        self.url = url
        self.dimension = dimension
        self.collection_name = collection
        self.grpc_port = grpc_port
        self.api_key = api_key
        self.consistency_level = consistency_level
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._known: set[str] = set()
        self._tenants: set[str] = set()

    # -- connection and schema -------------------------------------------------------
    async def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._client = await self._open()
        return self._client

    async def _open(self) -> Any:
        import weaviate
        from weaviate.classes.config import Configure, DataType, Property, Tokenization
        from weaviate.classes.init import AdditionalConfig, Auth, Timeout

        parsed = urlparse(self.url)
        secure = parsed.scheme == "https"
        host = parsed.hostname or "localhost"
        client = weaviate.use_async_with_custom(
            http_host=host,
            http_port=parsed.port or (443 if secure else 8080),
            http_secure=secure,
            grpc_host=host,
            grpc_port=self.grpc_port,
            grpc_secure=secure,
            auth_credentials=Auth.api_key(self.api_key) if self.api_key else None,
            additional_config=AdditionalConfig(
                timeout=Timeout(init=self.timeout_s, query=self.timeout_s, insert=self.timeout_s)
            ),
        )
        await client.connect()
        name = self.collection_name
        if not await client.collections.exists(name):
            await client.collections.create(
                name,
                properties=[
                    Property(
                        name=ID_PROP,
                        data_type=DataType.TEXT,
                        tokenization=Tokenization.FIELD,
                        index_searchable=False,
                    ),
                    Property(name=TEXT_PROP, data_type=DataType.TEXT),
                    Property(
                        name=META_PROP,
                        data_type=DataType.TEXT,
                        index_filterable=False,
                        index_searchable=False,
                    ),
                ],
                vector_config=Configure.Vectors.self_provided(
                    vector_index_config=Configure.VectorIndex.hnsw(
                        distance_metric=_cosine(),
                    )
                ),
                multi_tenancy_config=Configure.multi_tenancy(enabled=True),
                inverted_index_config=Configure.inverted_index(index_null_state=True),
            )
        if not await client.collections.exists(name + "Versions"):
            await client.collections.create(
                name + "Versions",
                properties=[Property(name="version", data_type=DataType.INT)],
                vector_config=Configure.Vectors.self_provided(),
                multi_tenancy_config=Configure.multi_tenancy(enabled=True),
            )
        config = await client.collections.get(name).config.get()
        self._known = {p.name for p in config.properties}
        return client

    async def _ensure_tenant(self, client: Any, name: str) -> None:
        if name in self._tenants:
            return
        from weaviate.classes.tenants import Tenant

        for coll in (self.collection_name, self.collection_name + "Versions"):
            collection = client.collections.get(coll)
            existing = await collection.tenants.get()
            if name not in existing:
                await collection.tenants.create([Tenant(name=name)])
        self._tenants.add(name)

    async def _ensure_properties(self, client: Any, names: set[str]) -> None:
        from weaviate.classes.config import DataType, Property, Tokenization

        collection = client.collections.get(self.collection_name)
        for name in sorted(names - self._known):
            kind = name.rsplit("__", 1)[1]
            if kind == "s":
                new = Property(
                    name=name,
                    data_type=DataType.TEXT,
                    tokenization=Tokenization.FIELD,
                    index_searchable=False,
                )
            else:
                new = Property(
                    name=name, data_type=DataType.NUMBER if kind == "n" else DataType.BOOL
                )
            await collection.config.add_property(new)
            self._known.add(name)

    async def _collection(self, tenant: str, *, versions: bool = False) -> Any:
        check_tenant(tenant)
        client = await self._connect()
        name = weaviate_tenant(tenant)
        await self._ensure_tenant(client, name)
        coll = client.collections.get(self.collection_name + ("Versions" if versions else ""))
        coll = coll.with_tenant(name)
        if self.consistency_level is not None:
            from weaviate.classes.config import ConsistencyLevel

            coll = coll.with_consistency_level(ConsistencyLevel[self.consistency_level])
        return coll

    async def _call(self, coro: Any) -> Any:
        """Await ``coro``; connection failures become 503 with Retry-After."""
        from weaviate.exceptions import (
            WeaviateConnectionError,
            WeaviateQueryError,
            WeaviateTimeoutError,
        )

        try:
            return await coro
        except (WeaviateConnectionError, WeaviateTimeoutError, OSError) as exc:
            raise Unavailable(
                f"Weaviate is unavailable ({type(exc).__name__}); retry shortly",
                retry_after_s=self.retry_after_s,
            ) from None
        except WeaviateQueryError as exc:
            raise UpstreamError(f"Weaviate rejected the query: {exc}") from None

    def _where(self, node: Any) -> Folded:
        return Translator(self._known).translate(node)

    # -- the contract ------------------------------------------------------------------
    async def upsert(
        self,
        *,
        tenant: str,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]],
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any]],
    ) -> int:
        check_tenant(tenant)
        batch = validate_batch(self.dimension, ids, vectors, texts, metadata)
        if batch is None:
            return 0
        from weaviate.classes.data import DataObject

        encoded = [encode_metadata(m) for m in batch.metadata]
        coll = await self._call(self._collection(tenant))
        await self._call(self._ensure_properties(self._client, {k for e in encoded for k in e}))
        objects = [
            DataObject(
                properties={ID_PROP: rid, TEXT_PROP: text, META_PROP: meta_json, **props},
                uuid=object_uuid(rid),
                vector=vec.tolist(),
            )
            for rid, text, meta_json, props, vec in zip(
                batch.ids, batch.texts, batch.metadata_json, encoded, batch.vectors, strict=True
            )
        ]
        result = await self._call(coll.data.insert_many(objects))
        await self._bump(tenant)
        if result.errors:
            failed = [
                {"index": i, "id": batch.ids[i], "message": err.message}
                for i, err in sorted(result.errors.items())
            ]
            raise UpstreamError(
                f"Weaviate rejected {len(failed)} of {len(objects)} objects "
                f"(first: {failed[0]['id']}: {failed[0]['message']}); the others were written",
                errors=failed,
                written=len(objects) - len(failed),
            )
        return len(objects)

    async def delete(
        self, *, tenant: str, ids: Sequence[str] | None = None, filter: Filter | None = None
    ) -> int:
        check_tenant(tenant)
        node = parse_filter(filter)
        if ids is None and node is None:
            raise InvalidRequest(
                "delete needs ids, a filter, or both (refusing to delete everything)"
            )
        if ids is not None and not ids:
            return 0
        coll = await self._call(self._collection(tenant))
        parts: list[Folded] = [self._where(node)]
        if ids is not None:
            parts.append(Leaf(ID_PROP, "contains_any", list(ids)))
        where = all_of(parts)
        if where is False:
            return 0
        if where is True:
            where = Leaf(ID_PROP, "is_none", False)
        result = await self._call(coll.data.delete_many(where=to_weaviate(where)))
        deleted = int(result.successful)
        if deleted:
            await self._bump(tenant)
        return deleted

    async def search(
        self, *, tenant: str, vector: Sequence[float], k: int, filter: Filter | None = None
    ) -> list[Hit]:
        check_tenant(tenant)
        check_k(k)
        query_vec = unit_vectors(self.dimension, [vector], what="query vector")[0].tolist()
        return await self._query(tenant, filter, near_vector_args(query_vec, k), "distance")

    async def search_lexical(
        self, *, tenant: str, query: str, k: int, filter: Filter | None = None
    ) -> list[Hit]:
        """Weaviate's BM25 on ``text`` (its tokenizer, the tenant shard's statistics)."""
        check_tenant(tenant)
        check_k(k)
        return await self._query(tenant, filter, bm25_args(query, k), "score")

    async def _query(
        self, tenant: str, filter: Filter | None, args: dict[str, Any], score: str
    ) -> list[Hit]:
        node = parse_filter(filter)
        coll = await self._call(self._collection(tenant))
        where = self._where(node)
        if where is False:
            return []
        filters = None if where is True else to_weaviate(where)
        method = coll.query.near_vector if score == "distance" else coll.query.bm25
        result = await self._call(method(**args, filters=filters))
        return hits_of(result.objects, score)

    async def count(self, *, tenant: str, filter: Filter | None = None) -> int:
        check_tenant(tenant)
        node = parse_filter(filter)
        coll = await self._call(self._collection(tenant))
        where = self._where(node)
        if where is False:
            return 0
        filters = None if where is True else to_weaviate(where)
        result = await self._call(coll.aggregate.over_all(total_count=True, filters=filters))
        return int(result.total_count or 0)

    async def index_version(self, *, tenant: str) -> int:
        coll = await self._call(self._collection(tenant, versions=True))
        obj = await self._call(coll.query.fetch_object_by_id(VERSION_UUID))
        return int(obj.properties["version"]) if obj is not None else 0

    async def _bump(self, tenant: str) -> None:
        coll = await self._call(self._collection(tenant, versions=True))
        version = await self.index_version(tenant=tenant) + 1
        if version == 1:
            await self._call(coll.data.insert({"version": version}, uuid=VERSION_UUID))
        else:
            await self._call(coll.data.replace(uuid=VERSION_UUID, properties={"version": version}))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def near_vector_args(vector: list[float], k: int) -> dict[str, Any]:
    from weaviate.classes.query import MetadataQuery

    return {
        "near_vector": vector,
        "limit": k,
        "return_metadata": MetadataQuery(distance=True),
        "return_properties": [ID_PROP, TEXT_PROP, META_PROP],
    }


def bm25_args(query: str, k: int) -> dict[str, Any]:
    from weaviate.classes.query import MetadataQuery

    return {
        "query": query,
        "query_properties": [TEXT_PROP],
        "limit": k,
        "return_metadata": MetadataQuery(score=True),
        "return_properties": [ID_PROP, TEXT_PROP, META_PROP],
    }


def hits_of(objects: Sequence[Any], score: str) -> list[Hit]:
    """Result objects as hits; ``score`` says which: ``distance`` (cosine = 1 - distance)
    or BM25 ``score``."""
    hits = []
    for obj in objects:
        props = obj.properties
        meta = json.loads(props.get(META_PROP) or "{}")
        if score == "distance":
            value = 1.0 - float(obj.metadata.distance or 0.0)
        else:
            value = float(obj.metadata.score or 0.0)
        source = meta.get("source")
        hits.append(
            Hit(
                id=str(props[ID_PROP]),
                score=value,
                text=str(props.get(TEXT_PROP) or ""),
                metadata=meta,
                source=source if isinstance(source, str) else "",
            )
        )
    return hits


def _cosine() -> Any:
    from weaviate.classes.config import VectorDistances

    return VectorDistances.COSINE


def build_weaviate(ctx: FactoryContext) -> WeaviateStore:
    """``kind = "weaviate"``: ``url`` (http[s]://host:port), ``grpc_port``, ``api_key_env``..."""
    import os

    from lanewise.retrieval.stores import store_dimension

    opts = ctx.read(
        {
            "url",
            "grpc_port",
            "api_key_env",
            "collection",
            "dimension",
            "consistency_level",
            "timeout_s",
        },
    )
    url = opts.required_text("url")
    env = opts.text("api_key_env")
    dimension = store_dimension(ctx, opts)
    return WeaviateStore(
        url=url,
        dimension=dimension,
        collection=opts.text("collection", "LanewiseChunks") or "LanewiseChunks",
        grpc_port=opts.integer("grpc_port", 50051),
        api_key=os.environ.get(env) if env else None,
        consistency_level=opts.text("consistency_level"),
        timeout_s=opts.number("timeout_s", 10.0, exclusive=True),
    )

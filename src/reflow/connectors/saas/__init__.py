"""The SaaS connector kit: what every destination speaking to a vendor's REST API shares.

Modules (import from them directly; this package imports nothing, so that the service
can import ``hooks`` without paying for httpx):

``connector``  ``SaasDestination`` and ``SaasWriter``, the declarative bases; ``Vendor``
               (documented URL, limits, batch size); ``Call`` (one vendor request);
               ``json_records``/``encode_json``/``chunks``.
``client``     ``open_client`` (the ONLY place an outbound httpx client is made),
               ``VendorClient`` (pacing, auth, 401 refresh, 429/Retry-After, 5xx backoff),
               ``DefaultPolicy`` (how a vendor's answers read), ``AuthFailed``,
               ``QuotaExhausted``.
``auth``       ``ApiKeyAuth``, ``BasicAuth``, ``OAuthRefresh`` (refresh-token flow),
               ``ReconnectRequired``.
``ratelimit``  ``Limit`` and the per-connection ``RateLimiter`` (in-process, or shared
               through Redis once ``share_through_redis`` was called).
``metadata``   ``field_type``, ``paginate``, ``MetadataCache``, ``FieldCreator``.
``hooks``      ``ConnectionHooks``: how a connector hands a refreshed token back to the
               service (stored encrypted) or marks its connection failed.

Writing a connector (``connectors/destinations/<service>.py``, registered by one line in
``connectors/registry.py``)::

    class AcmeConfig(ConnectorConfig):
        api_key: SecretStr = Field(title="API key", description="...")
        base_url: str | None = Field(None, title="API URL",
                                     description="Sandbox or regional URL; default production.")

    class AcmeWriter(SaasWriter):
        def call_for(self, records, indices, action):
            # One vendor request for records[i], i in indices (the kit chunks a batch by
            # vendor.batch_size; override calls() to chunk otherwise, e.g. by bytes).
            body = {"inputs": [records[i] for i in indices]}
            return Call("POST", f"/v1/{self.object.full_name}/batch", indices, json=body)

        def refuse(self, record, action):     # optional: never sent, rejected with reason
            return "over 32 KB" if too_big(record) else None

        def results(self, call, response):
            # The vendor's per-record errors -> [RejectedRecord(index, vendor's message)].
            # Default: 2xx accepts all; 400 raises BatchRejected (the kit halves the call
            # until the refused record is alone); anything else rejects all.
            ...

    class AcmeDestination(SaasDestination):
        service_name, label, documentation_slug = "acme", "Acme", "acme"
        config_model = AcmeConfig
        vendor = Vendor("Acme", "https://api.acme.com", limits=(Limit(100, 10),),
                        batch_size=100, concurrency=4)
        capabilities = DestinationCapabilities(operations=("upsert", "update"),
                                               batch_size=5_000)
        writer_class = AcmeWriter

        def make_auth(self, http):
            return ApiKeyAuth(self.config.api_key.get_secret_value())

        def verify(self):                    # the connection test: vendor's own message
            self.client.checked("GET", "/v1/me")

        def load_objects(self):              # DestinationObject/Field from the metadata API
            ...

The writer's records are dicts of JSON-ready values keyed by destination field
(``json_records``); ``self.ctx`` is the run's ``WriteContext``, ``self.object`` the
destination object, ``self.client`` the connection's ``VendorClient`` (use
``client.request`` for calls about records, ``client.checked`` for others).

Override ``error_message`` (the vendor's words from an error body), ``observe`` (read
limit headers, e.g. ``limiter.adopt(...)``), ``quota_exhausted`` (a 429 that means a
daily quota) and ``retry_after`` on the destination to describe the vendor's answers.

OAuth: ``make_auth`` returns ``OAuthRefresh(vendor=..., http=http, token_url=...,
client_id=..., client_secret=..., refresh_token=..., access_token=<stored, if any>,
expires_at=<stored access_token_expires_at>, hooks=self.connection_hooks(),
on_token=<optional: read e.g. instance_url>)``. Declare ``access_token`` (SecretStr) and
``access_token_expires_at`` (float) as optional credentials so a token the service saved
is used by the next process.
"""

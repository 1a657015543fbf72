"""The HTTP/1.1 listener Envoy forwards to: REST invokes (/v1/functions/…), HTTP triggers (/fn/…)
and /healthz."""

# syntax=docker/dockerfile:1
# One image per service from one build: `docker build --target task-service -t task-manager/task-service .`
# Targets: task-service, user-service, project-service, gateway.

# NODE_IMAGE is the pinned Node 24 base (same major as package.json engines); bump deliberately, never float.
ARG NODE_IMAGE=node:24.21.0-trixie-slim

# build compiles the whole workspace to dist/ and makes each service's production install.
FROM ${NODE_IMAGE} AS build
ARG PNPM_VERSION=11.28.11
# One pnpm store, in a BuildKit cache mount, for fetch, install and every `pnpm deploy`.
ENV CI=true PNPM_HOME=/pnpm PATH=/pnpm:$PATH pnpm_config_store_dir=/pnpm/store
RUN npm install --global --no-audit --no-fund --loglevel=error "pnpm@${PNPM_VERSION}"
WORKDIR /repo
# Dependencies first (only the lockfile decides them), so source edits reuse this layer.
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml .npmrc ./
RUN --mount=type=cache,id=pnpm-store,target=/pnpm/store pnpm fetch
COPY apps ./apps
COPY packages ./packages
COPY services ./services
COPY tsconfig.base.json ./
COPY scripts/k8s/prod-install.sh ./scripts/k8s/prod-install.sh
RUN --mount=type=cache,id=pnpm-store,target=/pnpm/store \
    pnpm install --frozen-lockfile --offline \
 && pnpm -r build
# The production install of each service, exactly as CI checks it (scripts/k8s/prod-install.sh).
RUN --mount=type=cache,id=pnpm-store,target=/pnpm/store \
    for dir in services/*/; do \
      service=$(basename "$dir"); \
      bash scripts/k8s/prod-install.sh "$service" "/deploy/$service"; \
    done

# runtime is what every service image shares.
FROM ${NODE_IMAGE} AS runtime
# Every service starts with the kit's tracing entry (`--import @task-manager/service-kit/instrument`), which loads
# OpenTelemetry before the service's modules when OTEL_EXPORTER_OTLP_ENDPOINT is set and does nothing otherwise
# (docs/operations.md, "Traces").
# Measured (docs/benchmarks.md): a small young generation plus a heap ceiling keep a service's peak RSS near
# 110-145 MB under load instead of 250-390 MB (the chart's memory limit is 256Mi).
ENV NODE_ENV=production \
    NODE_OPTIONS="--max-semi-space-size=4 --max-old-space-size=160" \
    HOST=0.0.0.0
WORKDIR /app
# Numeric non-root user (Kubernetes runAsNonRoot can verify a number, not a name); the app files stay
# owned by root and read-only to it.
USER 10001:10001

FROM runtime AS task-service
COPY --from=build /deploy/task-service/ /app/
ENV PORT=8003
EXPOSE 8003
CMD ["node", "--import", "@task-manager/service-kit/instrument", "dist/server.js"]

FROM runtime AS user-service
COPY --from=build /deploy/user-service/ /app/
ENV PORT=8004
EXPOSE 8004
CMD ["node", "--import", "@task-manager/service-kit/instrument", "dist/server.js"]

FROM runtime AS project-service
COPY --from=build /deploy/project-service/ /app/
ENV PORT=8005
EXPOSE 8005
CMD ["node", "--import", "@task-manager/service-kit/instrument", "dist/server.js"]

FROM runtime AS gateway
# /deploy/gateway/web is the web app's static build (prod-install.sh), served under /app/ (docs/web.md).
COPY --from=build /deploy/gateway/ /app/
# The gateway's runtime flags: the chart's nodeRuntime.gateway (why: charts/microservice/values.yaml).
ENV PORT=8006 \
    WEB_ROOT=/app/web \
    NODE_OPTIONS="--max-semi-space-size=4"
EXPOSE 8006
CMD ["node", "--import", "@task-manager/service-kit/instrument", "--single-threaded-gc", "--heap-growing-percent=300", "dist/server.js"]

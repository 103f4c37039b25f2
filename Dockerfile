# The tffreeze server as a container image: non-root, bubblewrap (the worker sandbox)
# included, the web page built (a Node stage: npm ci from web/package-lock.json, app.js), gRPC
# on 50051 and gRPC-Web with the page on 8080 (the C# client and browsers), the shared store
# and metrics ready to use (README: Running more than one server).
#
#   docker build -t tffreeze-server:0.3.0 .
#   docker run -p 50051:50051 -p 8080:8080 tffreeze-server:0.3.0
#   docker run -p 50051:50051 -p 8080:8080 -p 9100:9100 -e AWS_ACCESS_KEY_ID=... -e AWS_SECRET_ACCESS_KEY=... \
#       tffreeze-server:0.3.0 --insecure --store s3://BUCKET/tffreeze --metrics-port 9100 --metrics-host 0.0.0.0
#
# Arguments after the image replace CMD (--insecure: plaintext without a token, for a
# trusted network), so give --insecure again, or TLS and a token (--tls-cert, --tls-key,
# --auth-token-file, mounted read-only). The health check asks the server on a Unix socket
# in its data folder, so it works whatever TLS the port speaks.
#
# bwrap needs unprivileged user namespaces in the container (Kubernetes: see
# deploy/k8s/deployment.yaml); without them the server still starts with --sandbox none,
# refusing TF2 SavedModels and verify.

# The web page (what `make web` does): the pinned npm packages, TypeScript messages from protos/,
# tsc's check, one bundle. Only app.js leaves this stage.
FROM node:22-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY protos/ /src/protos/
COPY web/buf.gen.yaml web/tsconfig.json ./
COPY web/proto/ proto/
COPY web/src/ src/
RUN node_modules/.bin/buf generate \
 && node_modules/.bin/tsc --noEmit -p . \
 && node_modules/.bin/esbuild src/app.ts --bundle --minify --format=iife --target=es2020 --log-level=warning \
      --outfile=/src/app.js

FROM python:3.11-slim-bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bubblewrap \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 tffreeze \
 && mkdir -p /var/lib/tffreeze && chown 10001:10001 /var/lib/tffreeze
WORKDIR /opt/tffreeze

# Pinned runtime dependencies first (a layer that changes rarely; the tests' are in
# requirements-dev.txt and not installed), then the packages.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY protos/ protos/
COPY api_py/ api_py/
COPY client_py/ client_py/
COPY server/ server/
COPY --from=web /src/app.js server/tffreeze_server/web/app.js
COPY tools/gen_python.sh tools/
RUN tools/gen_python.sh python \
 && pip install --no-cache-dir --no-deps ./api_py ./client_py ./server

USER 10001
ENV TFFREEZE_DATA=/var/lib/tffreeze
VOLUME ["/var/lib/tffreeze"]
EXPOSE 50051 8080 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s \
  CMD ["python", "-m", "tffreeze_server.healthcheck", "unix:/var/lib/tffreeze/health.sock"]
# tffreeze-server (the console script): `ps` shows the command by its name
ENTRYPOINT ["tffreeze-server", "--host", "0.0.0.0", "--port", "50051", "--web-port", "8080", "--data-dir", "/var/lib/tffreeze", "--health-socket", "/var/lib/tffreeze/health.sock"]
CMD ["--insecure"]

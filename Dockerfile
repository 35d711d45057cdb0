# syntax=docker/dockerfile:1
# eProxy production image: Node.js 24 runs the TypeScript sources directly (type stripping), so there
# is no build step. The base is pinned by digest (node:24.21.0-bookworm-slim, the multi-arch index);
# renew the pin deliberately: docker buildx imagetools inspect node:24.21.0-bookworm-slim
FROM node:24.21.0-bookworm-slim@sha256:d6aa754f16b3197301076f047b5def2f02ea1dbbc2ca920407d46d7ec7f87b20 AS base

FROM base AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only: no sandbox packages (oidc-provider, the X.509 generator), no test tools.
# No install scripts run: no production dependency needs one.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM base
ENV NODE_ENV=production \
    EPROXY_STATE_DIR=/var/lib/eproxy
WORKDIR /app
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --chown=root:root package.json ./
COPY --chown=root:root bin ./bin
COPY --chown=root:root gen ./gen
COPY --chown=root:root src ./src
# The sandbox and the development PKI never reach the builder (.dockerignore): `eproxy sandbox` and
# `eproxy certs` are development commands and say so here. The code is owned by root and read-only for
# the process; the only writable place is the state directory (trace spool).
RUN mkdir -p /var/lib/eproxy /etc/eproxy \
    && chown node:node /var/lib/eproxy \
    && chmod 0750 /var/lib/eproxy
VOLUME ["/var/lib/eproxy"]
USER node
EXPOSE 8443
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
    CMD ["node", "-e", "require('node:https').get({host:'127.0.0.1',port:8443,path:'/healthz',rejectUnauthorized:false},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
ENTRYPOINT ["node", "bin/eproxy.js"]
CMD ["serve", "--config", "/etc/eproxy/eproxy.yaml"]

# syntax=docker/dockerfile:1
#
# visitord's image: a static binary on distroless, run as nonroot (65532).
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t visitord:dev .
#
# Nothing but the binary is in the image: the sites file, the secrets and the
# GeoIP database come at run time. Geolocation is optional; mount a City
# database (GeoLite2-City, GeoIP2-City or DB-IP City Lite) read-only:
#
#   docker run --rm -p 8080:8080 --read-only \
#     -v "$PWD/geoip-data:/geoip:ro" -e VISITORD_GEOIP_DB=/geoip/GeoLite2-City.mmdb \
#     -v "$PWD/sites.yaml:/etc/visitord/sites.yaml:ro" -e VISITORD_SITES=/etc/visitord/sites.yaml \
#     -e VISITORD_REDIS_URL=redis://redis:6379/0 \
#     -e VISITORD_COOKIE_SECRET -e VISITORD_DATA_KEY -e VISITORD_INDEX_KEY \
#     visitord:dev

ARG GO_VERSION=1.26.8

# The builder runs on the build machine's platform and cross-compiles.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/visitord ./cmd/visitord

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/visitord /visitord
# nonroot, by number, so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# 8080 public API; 9090 metrics and pprof (VISITORD_METRICS_ADDR), for Prometheus only.
EXPOSE 8080 9090
ENTRYPOINT ["/visitord"]

#!/usr/bin/env bash
# A throwaway certificate authority for the local stack, made once under
# .local/tls with openssl: the CA, a server certificate for 127.0.0.1 and
# localhost that Postgres serves, and a second, unrelated CA that tests
# trust instead to see a connection refused.
#   tls.sh make   make what is missing, write .local/tls/endpoint.env
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="$SLUICE_LOCAL/tls"
DAYS=825

make_ca() { # name
  openssl req -x509 -newkey rsa:2048 -nodes -days "$DAYS" -subj "/CN=Sluice local $1 CA" \
    -keyout "$DIR/$1-ca.key" -out "$DIR/$1-ca.pem" 2>/dev/null || die "openssl could not make the $1 CA"
}

make() {
  command -v openssl >/dev/null || die "openssl not found"
  mkdir -p "$DIR"
  if [[ ! -f "$DIR/server.pem" ]]; then
    log "making a throwaway CA and a server certificate in $DIR"
    make_ca local
    make_ca wrong
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null || die "openssl could not make the server key"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$DIR/server.ext"
    openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/local-ca.pem" -CAkey "$DIR/local-ca.key" \
      -CAcreateserial -days "$DAYS" -extfile "$DIR/server.ext" -out "$DIR/server.pem" 2>/dev/null \
      || die "openssl could not sign the server certificate"
    chmod 600 "$DIR"/*.key
  fi
  { echo "SLUICE_TLS_CA=$DIR/local-ca.pem"
    echo "SLUICE_TLS_WRONG_CA=$DIR/wrong-ca.pem"; } > "$DIR/endpoint.env"
}

case "${1:-}" in
  make) make ;;
  *) die "usage: tls.sh make" ;;
esac

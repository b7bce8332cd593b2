#!/usr/bin/env bash
# Tocsin's private PKI for the brokers' TLS listeners (Mosquitto, Kafka), made with openssl.
#
# usage: pki.sh [--renew|--new-ca] DIR [client-name...]
#
# Creates in DIR whatever is missing (nothing is overwritten, so it is safe to run on every start):
#   ca.key, ca.crt                  the CA (EC P-256, 10 years); clients trust ca.crt
#   server.key, server.crt          the brokers' certificate, SAN from TOCSIN_PKI_SAN
#                                   (default DNS:localhost,IP:127.0.0.1,DNS:mosquitto,DNS:kafka,
#                                   DNS:kafka-2,DNS:kafka-3: the compose brokers), 825 days
#   client-<name>.key/.crt          a client certificate per name given (CN = name), 825 days
#   kafka.p12, kafka.p12.password   server.key + server.crt + ca.crt as the Kafka broker's PKCS12 keystore
#   kafka-server.pem                server.key + server.crt as a PEM keystore (Kafka ssl.keystore.type=PEM)
# A leaf certificate that expires within 30 days, or that the CA no longer signs, is made again.
#   --renew   make every leaf certificate (and the keystore) again, keep the CA
#   --new-ca  start over with a new CA (every client must then get the new ca.crt)
# Private keys and the keystore password are mode 0600. DIR never belongs in git.
set -euo pipefail

die() {
    printf 'pki.sh: %s\n' "$*" >&2
    exit 1
}

mode=keep
case ${1:-} in
    --renew) mode=renew && shift ;;
    --new-ca) mode=new-ca && shift ;;
    -h | --help | "")
        sed -n '2,17p' "$0"
        exit 0
        ;;
esac
DIR=$1
shift
CLIENTS=("$@")
SAN=${TOCSIN_PKI_SAN:-DNS:localhost,IP:127.0.0.1,DNS:mosquitto,DNS:kafka,DNS:kafka-2,DNS:kafka-3}
LEAF_DAYS=825
command -v openssl >/dev/null 2>&1 || die "openssl not found (Debian: apt-get install openssl)"
mkdir -p "$DIR"
umask 077
cd "$DIR"

leaves() { ls server.crt client-*.crt 2>/dev/null || true; }

case $mode in
    new-ca) rm -f ca.key ca.crt ca.srl server.* client-*.* kafka.p12 kafka.p12.password kafka-server.pem ;;
    renew) rm -f server.crt client-*.crt kafka.p12 kafka-server.pem ;;
esac

if [[ ! -s ca.key || ! -s ca.crt ]]; then
    rm -f ca.key ca.crt server.crt client-*.crt kafka.p12 kafka-server.pem
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt \
        -days 3650 -subj "/O=Tocsin/CN=Tocsin broker CA" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || die "could not create the CA"
    chmod 644 ca.crt
fi

# drop leaves that expire soon or that this CA did not sign (a CA made anew)
for crt in $(leaves); do
    if ! openssl x509 -in "$crt" -noout -checkend $((30 * 86400)) >/dev/null 2>&1 ||
        ! openssl verify -CAfile ca.crt "$crt" >/dev/null 2>&1; then
        rm -f "$crt"
        [[ $crt != server.crt ]] || rm -f kafka.p12 kafka-server.pem
    fi
done

issue() { # name cn extensions
    local name=$1 cn=$2 ext=$3
    [[ -s $name.crt ]] && return 0
    [[ -s $name.key ]] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$name.key" 2>/dev/null
    openssl req -new -key "$name.key" -subj "/O=Tocsin/CN=$cn" -out "$name.csr" 2>/dev/null
    printf '%s\n' "$ext" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$LEAF_DAYS" -sha256 \
        -extfile "$name.ext" -out "$name.crt" 2>/dev/null || die "could not sign $name.crt"
    rm -f "$name.csr" "$name.ext"
    chmod 644 "$name.crt"
}

issue server "${SAN%%,*}" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$SAN"
for c in "${CLIENTS[@]}"; do
    [[ $c =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "client name '$c': letters, digits, _ . - only"
    issue "client-$c" "$c" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
done

if [[ ! -s kafka.p12 ]]; then
    [[ -s kafka.p12.password ]] || openssl rand -hex 16 >kafka.p12.password
    openssl pkcs12 -export -inkey server.key -in server.crt -certfile ca.crt -name kafka \
        -out kafka.p12 -passout "file:kafka.p12.password" || die "could not write kafka.p12"
fi
[[ -s kafka-server.pem ]] || cat server.key server.crt >kafka-server.pem
printf 'pki.sh: %s ready (CA %s)\n' "$DIR" "$(openssl x509 -in ca.crt -noout -fingerprint -sha256 | cut -d= -f2 | cut -c1-23)"

#!/bin/sh
# Make what a Redis reached over a network needs, once: a CA, a server
# certificate for the given host names, a client certificate for workers and
# clients, the `sandbox` ACL user's password, and Redis's ACL file (which holds
# only the password's SHA-256, and turns the default user off).
#   deploy/redis-secrets.sh DIR [HOST...]      (hosts: redis, localhost by default)
# Files already in DIR are kept: run it again to add only what is missing.
# docker-compose.yml mounts DIR=deploy/secrets; deploy/README.md shows how to
# turn them into a Kubernetes Secret.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 DIR [HOST...]" >&2; exit 2; }
dir=$1
shift
[ $# -gt 0 ] || set -- redis localhost
command -v openssl >/dev/null || { echo "$0: needs openssl (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
chmod 700 "$dir"  # the files inside are readable by the Redis container's own user
cd "$dir"

san=""
for host in "$@"; do
    case $host in
        *[!0-9.]*) san="$san,DNS:$host" ;;
        *) san="$san,IP:$host" ;;
    esac
done
san=${san#,}

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }

if [ ! -f ca.crt ]; then
    key ca.key
    openssl req -x509 -new -key ca.key -days 3650 -subj "/CN=sandbox-worker Redis CA" -out ca.crt
fi
sign() {  # sign NAME CN EXTENSIONS
    [ -f "$1.crt" ] && return 0
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
sign server redis "subjectAltName=$san
extendedKeyUsage=serverAuth"
sign tls sandbox "extendedKeyUsage=clientAuth"
[ -f password ] || openssl rand -base64 33 | tr -d '\n/+=' > password
if [ ! -f users.acl ]; then
    hash=$(printf '%s' "$(cat password)" | openssl dgst -sha256 -r | cut -d' ' -f1)
    # What Celery and kombu use; no admin commands (CONFIG, KEYS, FLUSHALL, DEBUG...).
    printf 'user default off\nuser sandbox on #%s ~* &* +@all -@dangerous\n' "$hash" > users.acl
fi
chmod 644 ./*.crt ./*.key password users.acl
chmod 600 ca.key  # only for signing more certificates; no service needs it
echo "redis-secrets: $dir has ca.crt, server.crt/.key ($san), tls.crt/.key, password, users.acl" >&2

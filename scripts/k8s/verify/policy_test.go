package verify

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func renders(t *testing.T) []*Render {
	t.Helper()
	rs, err := LoadRenders()
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func allContainers(spec corev1.PodSpec) []corev1.Container {
	return append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
}

// Pod Security Standards "restricted", plus a read-only root filesystem.
func TestPolicyRestrictedPodSecurity(t *testing.T) {
	for _, r := range renders(t) {
		for _, w := range r.Workloads() {
			where := fmt.Sprintf("%s: %s/%s", r.Case, w.Kind, w.Name)
			spec := w.Template.Spec
			if spec.HostNetwork || spec.HostPID || spec.HostIPC {
				t.Errorf("%s shares a host namespace", where)
			}
			for _, v := range spec.Volumes {
				if v.HostPath != nil {
					t.Errorf("%s mounts hostPath %s", where, v.Name)
				}
			}
			psc := spec.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Errorf("%s: pod runAsNonRoot is not true", where)
			}
			if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Errorf("%s: pod has no numeric non-root runAsUser", where)
			}
			podSeccomp := psc != nil && psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
			for _, c := range allContainers(spec) {
				sc := c.SecurityContext
				cw := fmt.Sprintf("%s container %s", where, c.Name)
				if sc == nil {
					t.Errorf("%s has no securityContext", cw)
					continue
				}
				if sc.Privileged != nil && *sc.Privileged {
					t.Errorf("%s is privileged", cw)
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("%s allows privilege escalation", cw)
				}
				if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
					t.Errorf("%s does not drop ALL capabilities", cw)
				}
				if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
					t.Errorf("%s adds capabilities %v", cw, sc.Capabilities.Add)
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("%s has a writable root filesystem", cw)
				}
				if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
					t.Errorf("%s runs as root", cw)
				}
				seccomp := podSeccomp || (sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault)
				if !seccomp {
					t.Errorf("%s has no RuntimeDefault seccomp profile", cw)
				}
			}
		}
	}
}

// Startup, liveness and readiness are distinct: liveness never touches dependencies, readiness does.
func TestPolicyProbes(t *testing.T) {
	for _, r := range renders(t) {
		for _, w := range r.Workloads() {
			if w.Kind == "Pod" {
				continue // a test hook runs to completion; nothing probes it
			}
			for _, c := range w.Template.Spec.Containers {
				where := fmt.Sprintf("%s: %s/%s container %s", r.Case, w.Kind, w.Name, c.Name)
				if c.LivenessProbe == nil || c.ReadinessProbe == nil {
					t.Errorf("%s lacks a liveness or readiness probe", where)
					continue
				}
				for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
					if p != nil && p.HTTPGet != nil && !hasPort(c, p.HTTPGet.Port.String()) {
						t.Errorf("%s probes port %s it does not declare", where, p.HTTPGet.Port.String())
					}
				}
				if w.Kind != "Deployment" {
					continue
				}
				if c.StartupProbe == nil {
					t.Errorf("%s has no startup probe", where)
					continue
				}
				live, ready := c.LivenessProbe.HTTPGet, c.ReadinessProbe.HTTPGet
				if live == nil || ready == nil {
					t.Errorf("%s: service probes must be HTTP", where)
					continue
				}
				if live.Path != "/health/live" || ready.Path != "/health/ready" {
					t.Errorf("%s: liveness %s / readiness %s, want the kit's /health/live and /health/ready", where, live.Path, ready.Path)
				}
				if c.StartupProbe.PeriodSeconds*c.StartupProbe.FailureThreshold < 30 {
					t.Errorf("%s: startup probe gives less than 30s to start", where)
				}
			}
		}
	}
}

func hasPort(c corev1.Container, port string) bool {
	for _, p := range c.Ports {
		if p.Name == port || strconv.Itoa(int(p.ContainerPort)) == port {
			return true
		}
	}
	return false
}

// Every container requests CPU and memory and is capped in memory; services carry the measured sizing.
func TestPolicyResources(t *testing.T) {
	for _, r := range renders(t) {
		for _, w := range r.Workloads() {
			for _, c := range allContainers(w.Template.Spec) {
				where := fmt.Sprintf("%s: %s/%s container %s", r.Case, w.Kind, w.Name, c.Name)
				req, lim := c.Resources.Requests, c.Resources.Limits
				for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
					if _, ok := req[name]; !ok {
						t.Errorf("%s requests no %s", where, name)
					}
					if _, ok := lim[name]; !ok && name != corev1.ResourceCPU {
						t.Errorf("%s has no %s limit", where, name)
					}
				}
				if m, ok := lim[corev1.ResourceMemory]; ok && m.Cmp(req[corev1.ResourceMemory]) < 0 {
					t.Errorf("%s: memory limit below its request", where)
				}
			}
		}
		if r.Case != "default" {
			continue
		}
		for _, d := range r.Deployments {
			c := d.Spec.Template.Spec.Containers[0]
			mem := c.Resources.Requests[corev1.ResourceMemory]
			limit := c.Resources.Limits[corev1.ResourceMemory]
			if mem.Cmp(resource.MustParse("64Mi")) < 0 || mem.Cmp(resource.MustParse("128Mi")) > 0 || limit.Cmp(resource.MustParse("256Mi")) != 0 {
				t.Errorf("%s: %s memory %s/%s, want a 64-128Mi request and a 256Mi limit (measured peak RSS ~110-145 MB)", r.Case, d.Name, mem.String(), limit.String())
			}
			// The measured runtime flags (docs/benchmarks.md; the gateway's in docs/gateway.md, "Performance"), after
			// the kit's tracing entry, which must load before the service's modules (docs/operations.md, "Traces").
			instrument := []string{"node", "--import", "@task-manager/service-kit/instrument"}
			wantOptions, wantCommand := "--max-semi-space-size=4 --max-old-space-size=160", append(slices.Clone(instrument), "dist/server.js")
			if d.Spec.Template.Labels["app.kubernetes.io/name"] == "gateway" {
				wantOptions, wantCommand = "--max-semi-space-size=4", append(slices.Clone(instrument), "--single-threaded-gc", "--heap-growing-percent=300", "dist/server.js")
			}
			cm := r.ConfigMap(d.Name)
			if cm == nil || cm.Data["NODE_OPTIONS"] != wantOptions {
				t.Errorf("%s: %s does not run with the measured NODE_OPTIONS %q", r.Case, d.Name, wantOptions)
			}
			if !slices.Equal(c.Command, wantCommand) {
				t.Errorf("%s: %s runs %q, want %q", r.Case, d.Name, c.Command, wantCommand)
			}
		}
	}
}

// The whole default release fits a laptop kind cluster; the total is printed for the docs.
func TestPolicyResourceTotals(t *testing.T) {
	for _, r := range renders(t) {
		if r.Case != "default" && r.Case != "kind" {
			continue
		}
		cpu, mem := resource.Quantity{}, resource.Quantity{}
		pods := int32(0)
		for _, w := range r.Workloads() {
			podCPU, podMem := effectiveRequests(w.Template.Spec)
			for i := int32(0); i < w.Replicas; i++ {
				cpu.Add(podCPU)
				mem.Add(podMem)
			}
			pods += w.Replicas
		}
		t.Logf("%s release requests: %d pods, CPU %dm, memory %dMi", r.Case, pods, cpu.MilliValue(), mem.Value()/(1<<20))
		if cpu.MilliValue() > 2000 || mem.Value() > 3<<30 {
			t.Errorf("%s: requests (CPU %dm, memory %dMi) exceed a laptop kind node (2 CPUs, 3Gi)", r.Case, cpu.MilliValue(), mem.Value()>>20)
		}
	}
}

// Kubernetes schedules a pod by max(largest init container, sum of app containers).
func effectiveRequests(spec corev1.PodSpec) (resource.Quantity, resource.Quantity) {
	cpu, mem := resource.Quantity{}, resource.Quantity{}
	for _, c := range spec.Containers {
		cpu.Add(c.Resources.Requests[corev1.ResourceCPU])
		mem.Add(c.Resources.Requests[corev1.ResourceMemory])
	}
	for _, c := range spec.InitContainers {
		if q := c.Resources.Requests[corev1.ResourceCPU]; q.Cmp(cpu) > 0 {
			cpu = q.DeepCopy()
		}
		if q := c.Resources.Requests[corev1.ResourceMemory]; q.Cmp(mem) > 0 {
			mem = q.DeepCopy()
		}
	}
	return cpu, mem
}

// preStop pause and termination grace match the service's drain (SHUTDOWN_* in its ConfigMap).
func TestPolicyShutdownMatchesDrain(t *testing.T) {
	for _, r := range renders(t) {
		for _, d := range r.Deployments {
			where := fmt.Sprintf("%s: Deployment/%s", r.Case, d.Name)
			spec := d.Spec.Template.Spec
			c := spec.Containers[0]
			if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
				t.Errorf("%s has no preStop pause", where)
				continue
			}
			pause := c.Lifecycle.PreStop.Sleep.Seconds
			cm := r.ConfigMap(d.Name)
			if cm == nil {
				t.Errorf("%s has no ConfigMap of its own", where)
				continue
			}
			graceMs, err1 := strconv.Atoi(cm.Data["SHUTDOWN_GRACE_MS"])
			delayMs, err2 := strconv.Atoi(cm.Data["SHUTDOWN_DELAY_MS"])
			if err1 != nil || err2 != nil {
				t.Errorf("%s: SHUTDOWN_GRACE_MS/SHUTDOWN_DELAY_MS missing from its config", where)
				continue
			}
			need := pause + int64(math.Ceil(float64(graceMs+delayMs)/1000))
			if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds <= need {
				t.Errorf("%s: terminationGracePeriodSeconds %v must exceed preStop %ds + drain %dms", where, spec.TerminationGracePeriodSeconds, pause, graceMs+delayMs)
			}
		}
	}
}

// Every workload that can run several pods has a PDB selecting exactly its pods.
func TestPolicyPodDisruptionBudgets(t *testing.T) {
	for _, r := range renders(t) {
		for _, d := range r.Deployments {
			found := false
			for _, pdb := range r.PDBs {
				pods, err := r.PodsMatching(pdb.Spec.Selector)
				if err != nil {
					t.Fatal(err)
				}
				if len(pods) == 1 && pods[0].Name == d.Name {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: Deployment/%s has no PodDisruptionBudget selecting its pods", r.Case, d.Name)
			}
		}
		for _, pdb := range r.PDBs {
			if pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.IntValue() >= 1 {
				if hpa := r.HPAFor("Deployment", pdb.Name); hpa == nil {
					t.Errorf("%s: PDB %s with minAvailable blocks node drains of a single replica", r.Case, pdb.Name)
				}
			}
		}
		for _, h := range r.HPAs {
			d := findDeployment(r, h.Spec.ScaleTargetRef.Name)
			if d == nil {
				t.Errorf("%s: HPA %s targets a missing Deployment", r.Case, h.Name)
			} else if d.Spec.Replicas != nil {
				t.Errorf("%s: Deployment/%s sets replicas although its HPA owns them", r.Case, d.Name)
			}
		}
	}
}

func findDeployment(r *Render, name string) *appsv1.Deployment {
	for i, d := range r.Deployments {
		if d.Name == name {
			return &r.Deployments[i]
		}
	}
	return nil
}

var pinnedImage = regexp.MustCompile(`^[a-z0-9.\-/:]+:[A-Za-z0-9._\-]+(@sha256:[a-f0-9]{64})?$`)

// No floating images: an explicit tag that is not latest (a digest may follow).
func TestPolicyPinnedImages(t *testing.T) {
	for _, r := range renders(t) {
		for _, w := range r.Workloads() {
			for _, c := range allContainers(w.Template.Spec) {
				tag := c.Image[strings.LastIndex(strings.Split(c.Image, "@")[0], ":")+1:]
				if !pinnedImage.MatchString(c.Image) || strings.HasPrefix(tag, "latest") {
					t.Errorf("%s: %s/%s container %s image %q is not pinned", r.Case, w.Kind, w.Name, c.Name, c.Image)
				}
			}
		}
	}
}

var secretName = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE|CREDENTIAL|API_KEY)`)

// Secrets come from Secret objects, never from plain values in ConfigMaps or env.
func TestPolicyNoSecretsInPlainValues(t *testing.T) {
	for _, r := range renders(t) {
		for _, cm := range r.ConfigMaps {
			for k, v := range cm.Data {
				if secretName.MatchString(k) || regexp.MustCompile(`://[^/:@]+:[^/@$]+@`).MatchString(v) {
					t.Errorf("%s: ConfigMap %s carries a secret-looking %s", r.Case, cm.Name, k)
				}
			}
		}
		for _, s := range r.Secrets {
			if len(s.StringData) > 0 {
				t.Errorf("%s: Secret %s uses stringData (plain text in the manifest)", r.Case, s.Name)
			}
		}
		for _, w := range r.Workloads() {
			for _, c := range allContainers(w.Template.Spec) {
				for _, e := range c.Env {
					if e.Value == "" {
						continue
					}
					if secretName.MatchString(e.Name) {
						t.Errorf("%s: %s/%s sets %s as a plain value", r.Case, w.Kind, w.Name, e.Name)
					}
					if m := regexp.MustCompile(`://[^/:@]+:([^/@]+)@`).FindStringSubmatch(e.Value); m != nil && !strings.HasPrefix(m[1], "$(") {
						t.Errorf("%s: %s/%s env %s embeds a literal password", r.Case, w.Kind, w.Name, e.Name)
					}
				}
			}
		}
	}
}

// Every Service selects pods of this release, on a port those pods declare.
func TestPolicyServicesSelectPods(t *testing.T) {
	for _, r := range renders(t) {
		for _, s := range r.Services {
			pods, err := r.PodsMatching(&metav1.LabelSelector{MatchLabels: s.Spec.Selector})
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Spec.Selector) == 0 || len(pods) != 1 {
				t.Errorf("%s: Service %s selects %d workloads, want exactly 1", r.Case, s.Name, len(pods))
				continue
			}
			for _, p := range s.Spec.Ports {
				ok := false
				for _, c := range pods[0].Template.Spec.Containers {
					ok = ok || hasPort(c, p.TargetPort.String())
				}
				if !ok {
					t.Errorf("%s: Service %s targets port %s that %s does not declare", r.Case, s.Name, p.TargetPort.String(), pods[0].Name)
				}
			}
		}
	}
}

// Default deny, and every selector in every NetworkPolicy names pods that exist.
func TestPolicyNetworkPolicySelectorsMatchPods(t *testing.T) {
	for _, r := range renders(t) {
		for _, w := range r.Workloads() {
			covered := false
			for _, np := range r.NetworkPolicies {
				pods, _ := r.PodsMatching(&np.Spec.PodSelector)
				for _, p := range pods {
					if p.Name == w.Name && len(np.Spec.PolicyTypes) == 2 {
						covered = true
					}
				}
			}
			if !covered {
				t.Errorf("%s: %s/%s is not isolated for ingress and egress by any NetworkPolicy", r.Case, w.Kind, w.Name)
			}
		}
		for _, np := range r.NetworkPolicies {
			if pods, _ := r.PodsMatching(&np.Spec.PodSelector); len(pods) == 0 {
				t.Errorf("%s: NetworkPolicy %s selects no pod", r.Case, np.Name)
			}
			if r.Standalone() {
				continue // its peers are other releases
			}
			var peers []networkingPeer
			for _, in := range np.Spec.Ingress {
				for _, p := range in.From {
					peers = append(peers, networkingPeer{p.PodSelector, p.NamespaceSelector != nil})
				}
			}
			for _, out := range np.Spec.Egress {
				for _, p := range out.To {
					peers = append(peers, networkingPeer{p.PodSelector, p.NamespaceSelector != nil})
				}
			}
			for _, p := range peers {
				if p.selector == nil || p.otherNamespace {
					continue // a namespace peer (DNS, the ingress controller, Prometheus)
				}
				if pods, _ := r.PodsMatching(p.selector); len(pods) == 0 {
					t.Errorf("%s: NetworkPolicy %s allows a peer %v that matches no pod", r.Case, np.Name, p.selector.MatchLabels)
				}
			}
		}
	}
}

type networkingPeer struct {
	selector       *metav1.LabelSelector
	otherNamespace bool
}

// The pods never get a Kubernetes API token: no service talks to the API server.
func TestPolicyNoServiceAccountToken(t *testing.T) {
	for _, r := range renders(t) {
		for _, sa := range r.ServiceAccounts {
			if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
				t.Errorf("%s: ServiceAccount %s automounts its token", r.Case, sa.Name)
			}
		}
		for _, w := range r.Workloads() {
			if a := w.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
				t.Errorf("%s: %s/%s mounts a service account token", r.Case, w.Kind, w.Name)
			}
		}
	}
}

// Service URLs in the config point at Services rendered in the same release and namespace.
func TestPolicyUpstreamsAreRenderedServices(t *testing.T) {
	url := regexp.MustCompile(`^(?:https?|nats)://([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local(:\d+)?(/.*)?$`)
	for _, r := range renders(t) {
		if r.Standalone() {
			continue
		}
		services := map[string]*corev1.Service{}
		for i, s := range r.Services {
			services[s.Namespace+"/"+s.Name] = &r.Services[i]
		}
		for _, cm := range r.ConfigMaps {
			for k, v := range cm.Data {
				if !strings.HasSuffix(k, "_URL") {
					continue
				}
				m := url.FindStringSubmatch(v)
				if m == nil {
					t.Errorf("%s: ConfigMap %s %s=%s is not a cluster DNS name", r.Case, cm.Name, k, v)
					continue
				}
				svc := services[m[2]+"/"+m[1]]
				if svc == nil {
					t.Errorf("%s: ConfigMap %s %s points at Service %s/%s, which the release does not have", r.Case, cm.Name, k, m[2], m[1])
					continue
				}
				// The URL's port must be one the Service serves; a headless Service has no port
				// translation, so there it must also be the pods' container port.
				port := "80"
				if m[3] != "" {
					port = m[3][1:]
				}
				ok := false
				for _, sp := range svc.Spec.Ports {
					if strconv.Itoa(int(sp.Port)) != port {
						continue
					}
					pods, _ := r.PodsMatching(&metav1.LabelSelector{MatchLabels: svc.Spec.Selector})
					for _, w := range pods {
						for _, c := range w.Template.Spec.Containers {
							for _, cp := range c.Ports {
								if cp.Name == sp.TargetPort.String() && (svc.Spec.ClusterIP != "None" || strconv.Itoa(int(cp.ContainerPort)) == port) {
									ok = true
								}
							}
						}
					}
				}
				if !ok {
					t.Errorf("%s: ConfigMap %s %s=%s: port %s does not reach a pod of Service %s", r.Case, cm.Name, k, v, port, svc.Name)
				}
			}
		}
	}
}

// Pods of a Deployment spread over nodes and zones.
func TestPolicyTopologySpread(t *testing.T) {
	for _, r := range renders(t) {
		for _, d := range r.Deployments {
			keys := map[string]bool{}
			for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
				pods, _ := r.PodsMatching(c.LabelSelector)
				if len(pods) == 1 && pods[0].Name == d.Name {
					keys[c.TopologyKey] = true
				}
			}
			if !keys["kubernetes.io/hostname"] || !keys["topology.kubernetes.io/zone"] {
				t.Errorf("%s: Deployment/%s does not spread its own pods over hosts and zones", r.Case, d.Name)
			}
		}
	}
}

// Package verify holds the policy and consistency tests of the Kubernetes delivery. They read the output
// of `helm template` (one file per values case, in $RENDERED_DIR, written by scripts/k8s/check.sh).
package verify

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// Render is one `helm template` output, decoded.
type Render struct {
	Case            string
	Deployments     []appsv1.Deployment
	StatefulSets    []appsv1.StatefulSet
	Services        []corev1.Service
	ConfigMaps      []corev1.ConfigMap
	Secrets         []corev1.Secret
	ServiceAccounts []corev1.ServiceAccount
	NetworkPolicies []networkingv1.NetworkPolicy
	PDBs            []policyv1.PodDisruptionBudget
	HPAs            []autoscalingv2.HorizontalPodAutoscaler
	Pods            []corev1.Pod
	Other           []map[string]any
}

// Workload is a pod template with the object that owns it.
type Workload struct {
	Kind, Name string
	Labels     map[string]string
	Template   corev1.PodTemplateSpec
	Replicas   int32
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

func LoadRender(file string) (*Render, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	r := &Render{Case: strings.TrimSuffix(filepath.Base(file), ".yaml")}
	for _, doc := range docSeparator.Split(string(data), -1) {
		var head struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		var target any
		switch head.Kind {
		case "":
			continue
		case "Deployment":
			target = push(&r.Deployments)
		case "StatefulSet":
			target = push(&r.StatefulSets)
		case "Service":
			target = push(&r.Services)
		case "ConfigMap":
			target = push(&r.ConfigMaps)
		case "Secret":
			target = push(&r.Secrets)
		case "ServiceAccount":
			target = push(&r.ServiceAccounts)
		case "NetworkPolicy":
			target = push(&r.NetworkPolicies)
		case "PodDisruptionBudget":
			target = push(&r.PDBs)
		case "HorizontalPodAutoscaler":
			target = push(&r.HPAs)
		case "Pod":
			target = push(&r.Pods)
		default:
			target = push(&r.Other)
		}
		if err := yaml.Unmarshal([]byte(doc), target); err != nil {
			return nil, fmt.Errorf("%s (%s): %w", file, head.Kind, err)
		}
	}
	return r, nil
}

// push appends a zero value to *list and returns where it is, for yaml.Unmarshal to fill.
func push[T any](list *[]T) *T {
	var zero T
	*list = append(*list, zero)
	return &(*list)[len(*list)-1]
}

// LoadRenders reads every case in $RENDERED_DIR.
func LoadRenders() ([]*Render, error) {
	dir := os.Getenv("RENDERED_DIR")
	if dir == "" {
		return nil, fmt.Errorf("RENDERED_DIR is not set (scripts/k8s/check.sh sets it)")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no rendered cases in %s", dir)
	}
	sort.Strings(files)
	var renders []*Render
	for _, f := range files {
		r, err := LoadRender(f)
		if err != nil {
			return nil, err
		}
		renders = append(renders, r)
	}
	return renders, nil
}

func (r *Render) Workloads() []Workload {
	var out []Workload
	for _, d := range r.Deployments {
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		if hpa := r.HPAFor("Deployment", d.Name); hpa != nil && hpa.Spec.MinReplicas != nil {
			replicas = *hpa.Spec.MinReplicas
		}
		out = append(out, Workload{"Deployment", d.Name, d.Labels, d.Spec.Template, replicas})
	}
	for _, s := range r.StatefulSets {
		replicas := int32(1)
		if s.Spec.Replicas != nil {
			replicas = *s.Spec.Replicas
		}
		out = append(out, Workload{"StatefulSet", s.Name, s.Labels, s.Spec.Template, replicas})
	}
	// Bare pods are `helm test` hooks: held to the same rules, but not part of the running system.
	for _, p := range r.Pods {
		out = append(out, Workload{"Pod", p.Name, p.Labels, corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}, 0})
	}
	return out
}

func (r *Render) HPAFor(kind, name string) *autoscalingv2.HorizontalPodAutoscaler {
	for i, h := range r.HPAs {
		if h.Spec.ScaleTargetRef.Kind == kind && h.Spec.ScaleTargetRef.Name == name {
			return &r.HPAs[i]
		}
	}
	return nil
}

func (r *Render) ConfigMap(name string) *corev1.ConfigMap {
	for i, c := range r.ConfigMaps {
		if c.Name == name {
			return &r.ConfigMaps[i]
		}
	}
	return nil
}

func (r *Render) Secret(name string) *corev1.Secret {
	for i, s := range r.Secrets {
		if s.Name == name {
			return &r.Secrets[i]
		}
	}
	return nil
}

// PodsMatching returns the workloads whose pod labels the selector matches.
func (r *Render) PodsMatching(selector *metav1.LabelSelector) ([]Workload, error) {
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, err
	}
	var out []Workload
	for _, w := range r.Workloads() {
		if sel.Matches(labels.Set(w.Template.Labels)) {
			out = append(out, w)
		}
	}
	return out, nil
}

// Standalone cases render one service on its own; its peers live in other releases.
func (r *Render) Standalone() bool { return strings.HasPrefix(r.Case, "standalone-") }

package verify

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// skaffold.yaml cannot run here (no container engine, no cluster), so what it refers to is checked:
// Dockerfile targets, chart paths, value keys, values files and the port-forwarded Service.
func TestPolicySkaffoldMatchesDockerfileAndChart(t *testing.T) {
	root := os.Getenv("REPO_ROOT")
	if root == "" {
		t.Fatal("REPO_ROOT is not set (scripts/k8s/check.sh sets it)")
	}
	var cfg struct {
		APIVersion string `json:"apiVersion"`
		Build      struct {
			Artifacts []struct {
				Image  string `json:"image"`
				Docker struct {
					Dockerfile string `json:"dockerfile"`
					Target     string `json:"target"`
				} `json:"docker"`
			} `json:"artifacts"`
		} `json:"build"`
		Deploy struct {
			Helm struct {
				Releases []struct {
					Name              string            `json:"name"`
					ChartPath         string            `json:"chartPath"`
					Namespace         string            `json:"namespace"`
					SetValueTemplates map[string]string `json:"setValueTemplates"`
				} `json:"releases"`
			} `json:"helm"`
		} `json:"deploy"`
		PortForward []struct {
			ResourceType string `json:"resourceType"`
			ResourceName string `json:"resourceName"`
			Namespace    string `json:"namespace"`
			Port         int    `json:"port"`
		} `json:"portForward"`
		Profiles []struct {
			Name    string `json:"name"`
			Patches []struct {
				Path  string   `json:"path"`
				Value []string `json:"value"`
			} `json:"patches"`
		} `json:"profiles"`
	}
	data, err := os.ReadFile(filepath.Join(root, "skaffold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		// Strict decoding of the fields above only fails on a type mismatch; unknown keys are tolerated.
		if !strings.Contains(err.Error(), "unknown field") {
			t.Fatal(err)
		}
	}
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?mi)^FROM\s+\S+\s+AS\s+(\S+)`).FindAllStringSubmatch(string(dockerfile), -1) {
		targets[m[1]] = true
	}
	images := map[string]bool{}
	for _, a := range cfg.Build.Artifacts {
		if !targets[a.Docker.Target] {
			t.Errorf("artifact %s builds Dockerfile target %q, which does not exist", a.Image, a.Docker.Target)
		}
		images[a.Image] = true
	}
	if len(cfg.Build.Artifacts) != 4 {
		t.Errorf("%d artifacts, want the 4 services", len(cfg.Build.Artifacts))
	}
	if len(cfg.Deploy.Helm.Releases) != 1 {
		t.Fatalf("want one Helm release of the umbrella chart")
	}
	rel := cfg.Deploy.Helm.Releases[0]
	valuesData, err := os.ReadFile(filepath.Join(root, rel.ChartPath, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(valuesData, &values); err != nil {
		t.Fatal(err)
	}
	for key, tmpl := range rel.SetValueTemplates {
		parts := strings.Split(key, ".")
		node := values
		for _, p := range parts[:len(parts)-1] {
			next, ok := node[p].(map[string]any)
			if !ok {
				t.Errorf("setValueTemplates %s: no %q in %s/values.yaml", key, p, rel.ChartPath)
				break
			}
			node = next
		}
		m := regexp.MustCompile(`IMAGE_(?:REPO|TAG)_(\w+)`).FindStringSubmatch(tmpl)
		if m == nil {
			t.Errorf("setValueTemplates %s=%s names no built image", key, tmpl)
			continue
		}
		found := false
		for img := range images {
			found = found || regexp.MustCompile(`[^A-Za-z0-9]`).ReplaceAllString(img, "_") == m[1]
		}
		if !found {
			t.Errorf("setValueTemplates %s uses image %s, which no artifact builds", key, m[1])
		}
	}
	for _, p := range cfg.Profiles {
		for _, patch := range p.Patches {
			for _, file := range patch.Value {
				if _, err := os.Stat(filepath.Join(root, file)); err != nil {
					t.Errorf("profile %s: values file %s does not exist", p.Name, file)
				}
			}
		}
	}
	// The port-forwarded Service is the gateway's, as the chart names it for this release.
	kind, err := LoadRender(filepath.Join(os.Getenv("RENDERED_DIR"), "kind.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pf := range cfg.PortForward {
		ok := false
		for _, s := range kind.Services {
			name := strings.Replace(s.Name, "tm-", rel.Name+"-", 1)
			if pf.ResourceType == "service" && name == pf.ResourceName && pf.Namespace == rel.Namespace && s.Spec.Ports[0].Port == int32(pf.Port) {
				ok = s.Spec.Selector["app.kubernetes.io/name"] == "gateway"
			}
		}
		if !ok {
			t.Errorf("portForward %s/%s:%d is not the gateway Service the chart renders", pf.Namespace, pf.ResourceName, pf.Port)
		}
	}
}

// Command schemas lays out, offline, the JSON schemas kubeconform validates against:
//
//   - the Kubernetes OpenAPI schemas of one Kubernetes version, in their strict variant (unknown fields
//     fail), taken from the kubernetes-validate wheel on PyPI, with their "$ref"s made relative so the
//     validator resolves them from disk instead of fetching kubernetes.io;
//   - JSON schemas for custom resources, converted from the CRD YAML that the projects ship in their Go
//     modules (Gateway API, Prometheus Operator), made strict the same way.
//
// Usage: schemas -wheel kubernetes_validate-X.whl -kubernetes 1.34.0 -out DIR crd.yaml...
// Output: DIR/kubernetes/<kind>-<group>-<version>.json and DIR/crds/<group>/<kind>_<version>.json.
package main

import (
	"archive/zip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

func main() {
	wheel := flag.String("wheel", "", "kubernetes-validate wheel")
	version := flag.String("kubernetes", "1.34.0", "Kubernetes version whose schemas are used")
	out := flag.String("out", "", "output folder")
	flag.Parse()
	if *wheel == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	n, err := extractKubernetes(*wheel, *version, filepath.Join(*out, "kubernetes"))
	check(err)
	crds := 0
	for _, file := range flag.Args() {
		c, err := convertCRDs(file, filepath.Join(*out, "crds"))
		check(err)
		crds += c
	}
	fmt.Printf("schemas: %d Kubernetes v%s schemas (strict), %d custom resource schemas -> %s\n", n, *version, crds, *out)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "schemas:", err)
		os.Exit(1)
	}
}

func extractKubernetes(wheel, version, out string) (int, error) {
	zr, err := zip.OpenReader(wheel)
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	prefix := fmt.Sprintf("kubernetes_validate/kubernetes-json-schema/v%s-local-strict/", version)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return 0, err
	}
	n := 0
	for _, f := range zr.File {
		if !strings.HasPrefix(f.Name, prefix) || !strings.HasSuffix(f.Name, ".json") {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return n, err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return n, err
		}
		// The schemas name their shared definitions by an absolute path under their https $id; on disk the
		// definitions file sits beside them.
		data = []byte(strings.ReplaceAll(string(data), `"/api/_definitions.json#`, `"_definitions.json#`))
		var schema map[string]any
		if err := json.Unmarshal(data, &schema); err != nil {
			return n, fmt.Errorf("%s: %w", f.Name, err)
		}
		delete(schema, "$id")
		if err := writeJSON(filepath.Join(out, path.Base(f.Name)), schema); err != nil {
			return n, err
		}
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("no schemas for Kubernetes v%s in %s", version, wheel)
	}
	return n, nil
}

type crd struct {
	Kind string `json:"kind"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []struct {
			Name   string `json:"name"`
			Schema struct {
				OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

func convertCRDs(file, out string) (int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var c crd
		if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
			return n, fmt.Errorf("%s: %w", file, err)
		}
		if c.Kind != "CustomResourceDefinition" {
			continue
		}
		for _, v := range c.Spec.Versions {
			schema := v.Schema.OpenAPIV3Schema
			if schema == nil {
				continue
			}
			strict(schema)
			props, _ := schema["properties"].(map[string]any)
			if props != nil {
				// metadata is left open by CRDs; the API server validates it as ObjectMeta.
				props["apiVersion"] = map[string]any{"type": "string", "enum": []any{c.Spec.Group + "/" + v.Name}}
				props["kind"] = map[string]any{"type": "string", "enum": []any{c.Spec.Names.Kind}}
			}
			schema["$schema"] = "http://json-schema.org/draft-04/schema#"
			name := fmt.Sprintf("%s_%s.json", strings.ToLower(c.Spec.Names.Kind), v.Name)
			if err := writeJSON(filepath.Join(out, c.Spec.Group, name), schema); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// strict closes every object that lists its properties, unless the CRD keeps unknown fields on purpose.
// Our own converter rather than openapi2jsonschema: it is twenty lines, needs no Python, and only this
// rule is wanted.
func strict(node map[string]any) {
	if props, ok := node["properties"].(map[string]any); ok {
		if _, set := node["additionalProperties"]; !set && node["x-kubernetes-preserve-unknown-fields"] != true {
			node["additionalProperties"] = false
		}
		for _, p := range props {
			if m, ok := p.(map[string]any); ok {
				strict(m)
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties"} {
		if m, ok := node[key].(map[string]any); ok {
			strict(m)
		}
	}
	for _, key := range []string{"allOf", "anyOf", "oneOf"} {
		if list, ok := node[key].([]any); ok {
			for _, item := range list {
				if m, ok := item.(map[string]any); ok {
					strict(m)
				}
			}
		}
	}
}

func writeJSON(file string, v any) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(file, data, 0o644)
}

package verify

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// The Dockerfile goes through BuildKit's own frontend (the parser and instruction reader `docker build`
// uses, RUN --mount flags included) with every build check (lint rule) turned on: a syntax error, an
// unknown flag or a lint warning fails here instead of in someone's `skaffold dev`.
func TestPolicyDockerfileParsesWithBuildKit(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(os.Getenv("REPO_ROOT"), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	ast, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ast.Warnings {
		t.Errorf("parser warning: %s", w.Short)
	}
	lint := linter.New(&linter.Config{
		ExperimentalAll: true,
		Warn: func(rule, description, url, msg string, location []parser.Range) {
			line := 0
			if len(location) > 0 {
				line = location[0].Start.Line
			}
			t.Errorf("Dockerfile:%d: %s: %s", line, rule, msg)
		},
	})
	stages, _, err := instructions.Parse(ast.AST, lint)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, st := range stages {
		names = append(names, st.Name)
	}
	t.Logf("BuildKit reads %d stages: %s", len(stages), strings.Join(names, ", "))
}

// No container engine runs here, so the Dockerfile is held to its contract by reading it: one final stage
// per service (named as the service), built from the production install, running `node dist/server.js`
// as a numeric non-root user on a pinned base, with the command line, NODE_OPTIONS and port the chart gives
// the service.
func TestPolicyDockerfileStagesMatchServicesAndChart(t *testing.T) {
	root := os.Getenv("REPO_ROOT")
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if m := regexp.MustCompile(`(?m)^ARG NODE_IMAGE=node:(\d+)\.(\d+)\.(\d+)-[a-z]+-slim$`).FindStringSubmatch(text); m == nil || m[1] != "24" {
		t.Errorf("the base image is not a pinned Node 24 (ARG NODE_IMAGE=node:24.x.y-<debian>-slim)")
	}
	if !regexp.MustCompile(`(?m)^USER [1-9][0-9]{3,}:[1-9][0-9]{3,}$`).MatchString(text) {
		t.Errorf("the runtime stage does not switch to a numeric non-root USER")
	}
	if !strings.Contains(text, "scripts/k8s/prod-install.sh") {
		t.Errorf("the image is not made with the production install CI checks (scripts/k8s/prod-install.sh)")
	}
	stages := map[string]string{}
	parts := regexp.MustCompile(`(?m)^FROM `).Split(text, -1)
	for _, part := range parts[1:] {
		m := regexp.MustCompile(`^\S+\s+AS\s+(\S+)`).FindStringSubmatch(part)
		if m != nil {
			stages[m[1]] = part
		}
	}
	kind, err := LoadRender(filepath.Join(os.Getenv("RENDERED_DIR"), "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]int32{}
	commands := map[string][]string{}
	nodeOptions := map[string]string{}
	for _, d := range kind.Deployments {
		name := d.Spec.Template.Labels["app.kubernetes.io/name"]
		c := d.Spec.Template.Spec.Containers[0]
		ports[name] = c.Ports[0].ContainerPort
		commands[name] = c.Command
		if cm := kind.ConfigMap(d.Name); cm != nil {
			nodeOptions[name] = cm.Data["NODE_OPTIONS"]
		}
	}
	nodeOptionsOf := regexp.MustCompile(`NODE_OPTIONS="([^"]*)"`)
	defaultOptions := nodeOptionsOf.FindStringSubmatch(stages["runtime"])
	dirs, _ := filepath.Glob(filepath.Join(root, "services", "*", "package.json"))
	if len(dirs) == 0 {
		t.Fatal("no services found")
	}
	for _, pkg := range dirs {
		name := filepath.Base(filepath.Dir(pkg))
		stage, ok := stages[name]
		if !ok {
			t.Errorf("services/%s has no Dockerfile target %q", name, name)
			continue
		}
		if !strings.HasPrefix(stage, "runtime AS ") {
			t.Errorf("target %s does not build on the shared runtime stage", name)
		}
		if !strings.Contains(stage, "COPY --from=build /deploy/"+name+"/ /app/") {
			t.Errorf("target %s does not copy its own production install", name)
		}
		// The image runs what the chart runs: the same node command line (V8 flags included) and NODE_OPTIONS.
		var argv []string
		cmd := regexp.MustCompile(`(?m)^CMD (\[.*\])$`).FindStringSubmatch(stage)
		if cmd == nil || json.Unmarshal([]byte(cmd[1]), &argv) != nil || len(argv) < 2 || argv[0] != "node" ||
			argv[len(argv)-1] != "dist/server.js" {
			t.Errorf("target %s does not run node dist/server.js directly", name)
		} else if !slices.Equal(argv, commands[name]) {
			t.Errorf("target %s runs %q, its Deployment %q", name, argv, commands[name])
		}
		options := nodeOptionsOf.FindStringSubmatch(stage)
		if options == nil {
			options = defaultOptions
		}
		if options == nil {
			t.Errorf("target %s sets no NODE_OPTIONS, its Deployment %q", name, nodeOptions[name])
		} else if options[1] != nodeOptions[name] {
			t.Errorf("target %s runs with NODE_OPTIONS %q, its Deployment with %q", name, options[1], nodeOptions[name])
		}
		port, ok := ports[name]
		if !ok {
			t.Errorf("service %s is not in the umbrella chart", name)
			continue
		}
		p := strconv.Itoa(int(port))
		if !strings.Contains(stage, "ENV PORT="+p) || !strings.Contains(stage, "EXPOSE "+p) {
			t.Errorf("target %s does not default to the chart's port %s", name, p)
		}
	}
}

package verify

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestConsistency starts every service found in $PROD_ROOT/<name> (a `pnpm deploy --prod` folder, as
// in the image) the way its rendered Deployment runs it: the init container's and the container's
// command, the ConfigMap + env (secret values read from the rendered Secrets), the container port. The
// only changes are the ones a laptop forces: HOST=127.0.0.1 and in-cluster DNS names mapped to loopback
// (the database to an embedded PostgreSQL, other services to their rendered ports). Then the rendered
// startup, liveness and readiness probes and the metrics endpoint must answer, and SIGTERM must drain
// within the pod's termination grace period.
func TestConsistency(t *testing.T) {
	prodRoot := os.Getenv("PROD_ROOT")
	repoRoot := os.Getenv("REPO_ROOT")
	if prodRoot == "" || repoRoot == "" {
		t.Fatal("PROD_ROOT and REPO_ROOT must be set (scripts/k8s/check.sh sets them)")
	}
	for _, renderCase := range []string{"default", "no-operator-crds"} {
		t.Run(renderCase, func(t *testing.T) {
			r, err := LoadRender(filepath.Join(os.Getenv("RENDERED_DIR"), renderCase+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			runConsistency(t, r, prodRoot, repoRoot)
		})
	}
}

type plan struct {
	name       string
	deployment appsv1.Deployment
	container  corev1.Container
	port       int
	env        map[string]string
	dir        string
	metricsURL string // where the render tells Prometheus to scrape (set by checkProbes)
}

func runConsistency(t *testing.T, r *Render, prodRoot, repoRoot string) {
	// In-cluster host name -> loopback port, for every Service of the release.
	var plans []*plan
	for _, d := range r.Deployments {
		name := d.Spec.Template.Labels["app.kubernetes.io/name"]
		dir := filepath.Join(prodRoot, name)
		if _, err := os.Stat(filepath.Join(dir, "dist", "server.js")); err != nil {
			t.Logf("%s: not built, not checked", name)
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		plans = append(plans, &plan{name: name, deployment: d, container: c, port: int(c.Ports[0].ContainerPort), dir: dir})
	}
	if len(plans) == 0 {
		t.Fatal("no built service to check")
	}

	// Databases: one role + database per service, with the password its rendered Secret holds.
	var dbSpecs []string
	for _, p := range plans {
		for _, e := range p.container.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.Name == "PGPASSWORD" {
				secret := r.Secret(e.ValueFrom.SecretKeyRef.Name)
				if secret == nil {
					t.Fatalf("%s: Secret %s is not rendered", p.name, e.ValueFrom.SecretKeyRef.Name)
				}
				dbSpecs = append(dbSpecs, dbUser(t, p)+":"+string(secret.Data[e.ValueFrom.SecretKeyRef.Key]))
			}
		}
	}
	pgPort := startPostgres(t, repoRoot, dbSpecs)

	// In-cluster host names (ClusterIP and headless Services) -> the loopback port behind them.
	hostPorts := map[string]int{}
	for _, s := range r.Services {
		host := s.Name + "." + s.Namespace + ".svc.cluster.local"
		for _, p := range plans {
			if s.Spec.Selector["app.kubernetes.io/name"] == p.name {
				hostPorts[host] = p.port
			}
		}
		if strings.HasSuffix(s.Name, "-postgresql") {
			hostPorts[host] = pgPort
		}
	}
	for _, p := range plans {
		p.env = renderedEnv(t, r, p.deployment, p.container, hostPorts)
		// The image's own ENV WEB_ROOT=/app/web (Dockerfile, gateway stage), where prod-install.sh put it.
		if web := filepath.Join(p.dir, "web"); p.env["WEB_ROOT"] == "" {
			if _, err := os.Stat(filepath.Join(web, "index.html")); err == nil {
				p.env["WEB_ROOT"] = web
			}
		}
	}

	// Migrations first, as the init containers do, then every service at once.
	for _, p := range plans {
		for _, init := range p.deployment.Spec.Template.Spec.InitContainers {
			env := renderedEnv(t, r, p.deployment, init, hostPorts)
			out, err := command(context.Background(), p.dir, init.Command, env).CombinedOutput()
			if err != nil {
				t.Fatalf("%s init container %s (%v) failed: %v\n%s", p.name, init.Name, init.Command, err, out)
			}
			t.Logf("%s: init container %s ran %v", p.name, init.Name, init.Command)
		}
	}
	// The services listen on the ports their Deployments render; another process on one of them would
	// answer in their place, so that is reported as what it is.
	for _, p := range plans {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.port))
		if err != nil {
			t.Fatalf("%s: its rendered port %d is taken by another process on this machine: %v", p.name, p.port, err)
		}
		l.Close()
	}
	procs := map[string]*running{}
	for _, p := range plans {
		procs[p.name] = start(t, p)
	}
	for _, p := range plans {
		checkProbes(t, r, p, procs[p.name])
	}
	for _, p := range plans {
		if p.env["DISCOVERY_MODE"] != "" || p.env["TASK_SERVICE_URL"] != "" && p.env["USER_SERVICE_URL"] != "" {
			checkGatewayWiring(t, p, plans)
			runHelmTests(t, r, p, hostPorts)
			measureMemory(t, p, plans, procs)
		}
	}
	for _, p := range plans {
		checkDrain(t, p, procs[p.name])
	}
}

func dbUser(t *testing.T, p *plan) string {
	for _, e := range p.container.Env {
		if e.Name == "DATABASE_URL" {
			m := regexp.MustCompile(`^postgres://([^:@/]+)[:@]`).FindStringSubmatch(e.Value)
			if m != nil {
				return m[1]
			}
		}
	}
	t.Fatalf("%s: no DATABASE_URL with a user", p.name)
	return ""
}

var clusterURL = regexp.MustCompile(`([a-z0-9-]+\.[a-z0-9-]+\.svc\.cluster\.local)(:\d+)?`)

// renderedEnv is the environment Kubernetes would give the container: ConfigMap envFrom, then env with
// $(VAR) expansion; Secret values from the rendered Secrets. Cluster DNS names are mapped to loopback.
func renderedEnv(t *testing.T, r *Render, d appsv1.Deployment, c corev1.Container, hostPorts map[string]int) map[string]string {
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.SecretRef != nil {
			// A Secret the release renders (the user-service's signing keys); an existing one is not checked.
			s := r.Secret(from.SecretRef.Name)
			if s == nil {
				t.Fatalf("%s: envFrom Secret %s is not rendered", d.Name, from.SecretRef.Name)
			}
			for k, v := range s.Data {
				env[k] = string(v)
			}
			continue
		}
		if from.ConfigMapRef == nil {
			t.Fatalf("%s: envFrom %+v is not a rendered ConfigMap", d.Name, from)
		}
		cm := r.ConfigMap(from.ConfigMapRef.Name)
		if cm == nil {
			t.Fatalf("%s: ConfigMap %s is not rendered", d.Name, from.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	expand := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			s := r.Secret(e.ValueFrom.SecretKeyRef.Name)
			if s == nil {
				t.Fatalf("%s: Secret %s is not rendered", d.Name, e.ValueFrom.SecretKeyRef.Name)
			}
			env[e.Name] = string(s.Data[e.ValueFrom.SecretKeyRef.Key])
		case e.ValueFrom != nil:
			t.Fatalf("%s: env %s has an unsupported source", d.Name, e.Name)
		default:
			env[e.Name] = expand.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if v, ok := env[ref[2:len(ref)-1]]; ok {
					return v
				}
				return ref
			})
		}
	}
	for k, v := range env {
		env[k] = clusterURL.ReplaceAllStringFunc(v, func(hostPort string) string {
			if port, ok := hostPorts[clusterURL.FindStringSubmatch(hostPort)[1]]; ok {
				return "127.0.0.1:" + strconv.Itoa(port)
			}
			return hostPort // a service that is not built: left unreachable, as in a cluster without it
		})
	}
	env["HOST"] = "127.0.0.1" // tests listen on loopback only
	return env
}

func command(ctx context.Context, dir string, argv []string, env map[string]string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

func startPostgres(t *testing.T, repoRoot string, specs []string) int {
	cmd := exec.Command("node", append([]string{filepath.Join(repoRoot, "scripts/k8s/postgres.ts")}, specs...)...)
	cmd.Dir = repoRoot
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("embedded PostgreSQL did not start: %v", err)
	}
	var ready struct{ Port int }
	if err := json.Unmarshal([]byte(line), &ready); err != nil || ready.Port == 0 {
		t.Fatalf("embedded PostgreSQL said %q", line)
	}
	return ready.Port
}

type running struct {
	cmd    *exec.Cmd
	output *lockedBuffer
	exited chan struct{}
	err    error
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *lockedBuffer) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := string(b.buf)
	if len(s) > 3000 {
		s = s[len(s)-3000:]
	}
	return s
}

func start(t *testing.T, p *plan) *running {
	rn := &running{output: &lockedBuffer{}, exited: make(chan struct{})}
	rn.cmd = command(context.Background(), p.dir, p.container.Command, p.env)
	rn.cmd.Stdout, rn.cmd.Stderr = rn.output, rn.output
	if err := rn.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	go func() { rn.err = rn.cmd.Wait(); close(rn.exited) }()
	t.Cleanup(func() {
		select {
		case <-rn.exited:
		default:
			_ = rn.cmd.Process.Kill()
			<-rn.exited
		}
	})
	t.Logf("%s: started %v in %s on port %d", p.name, p.container.Command, p.dir, p.port)
	return rn
}

// probeClient asks like the kubelet does: one connection per probe, no keep-alive.
var probeClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func get(url string) (int, string, http.Header, error) {
	res, err := probeClient.Get(url)
	if err != nil {
		return 0, "", nil, err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body), res.Header, nil
}

// waitFor polls the probe the way the kubelet would, within its period × failureThreshold budget.
func waitFor(t *testing.T, p *plan, rn *running, what string, probe *corev1.Probe) {
	url := fmt.Sprintf("http://127.0.0.1:%d%s", p.port, probe.HTTPGet.Path)
	if probe.HTTPGet.Port.String() != "http" && probe.HTTPGet.Port.IntValue() != p.port {
		t.Errorf("%s: %s probe port %s is not the container port", p.name, what, probe.HTTPGet.Port.String())
	}
	period := time.Duration(max(probe.PeriodSeconds, 1)) * time.Second
	budget := time.Duration(max(probe.FailureThreshold, 1)) * period
	deadline := time.Now().Add(budget)
	var last string
	for {
		select {
		case <-rn.exited:
			t.Fatalf("%s exited (%v) before its %s probe passed:\n%s", p.name, rn.err, what, rn.output.tail())
		default:
		}
		status, body, _, err := get(url)
		if err == nil && status >= 200 && status < 400 {
			t.Logf("%s: %s probe GET %s -> %d", p.name, what, probe.HTTPGet.Path, status)
			return
		}
		last = fmt.Sprintf("%d %s %v", status, body, err)
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s probe GET %s failed for %s (last: %s)\n%s", p.name, what, url, budget, last, rn.output.tail())
		}
		time.Sleep(min(period, 500*time.Millisecond))
	}
}

func checkProbes(t *testing.T, r *Render, p *plan, rn *running) {
	c := p.container
	waitFor(t, p, rn, "startup", c.StartupProbe)
	waitFor(t, p, rn, "liveness", c.LivenessProbe)
	waitFor(t, p, rn, "readiness", c.ReadinessProbe)

	// Metrics where the render tells Prometheus to scrape: the prometheus.io/* annotations, or the
	// ServiceMonitor's endpoint (a port of the Service, which targets a container port).
	metricsPort, metricsPath := 0, ""
	if ann := p.deployment.Spec.Template.Annotations; ann["prometheus.io/scrape"] == "true" {
		metricsPort, _ = strconv.Atoi(ann["prometheus.io/port"])
		metricsPath = ann["prometheus.io/path"]
	}
	for _, o := range r.Other {
		if o["kind"] != "ServiceMonitor" || nameOf(o) != p.deployment.Name {
			continue
		}
		endpoint := o["spec"].(map[string]any)["endpoints"].([]any)[0].(map[string]any)
		metricsPath, _ = endpoint["path"].(string)
		for _, s := range r.Services {
			if s.Name != p.deployment.Name {
				continue
			}
			for _, sp := range s.Spec.Ports {
				if sp.Name == endpoint["port"] {
					for _, cp := range c.Ports {
						if cp.Name == sp.TargetPort.String() || int(cp.ContainerPort) == sp.TargetPort.IntValue() {
							metricsPort = int(cp.ContainerPort)
						}
					}
				}
			}
		}
	}
	if metricsPort == 0 || metricsPath == "" {
		t.Fatalf("%s: the render tells Prometheus no metrics port and path", p.name)
	}
	p.metricsURL = fmt.Sprintf("http://127.0.0.1:%d%s", metricsPort, metricsPath)
	status, body, header, err := get(p.metricsURL)
	if err != nil || status != 200 || !strings.HasPrefix(header.Get("Content-Type"), "text/plain") || !strings.Contains(body, "# TYPE ") {
		t.Fatalf("%s: metrics at :%d%s answered %d %v (%s)", p.name, metricsPort, metricsPath, status, err, header.Get("Content-Type"))
	}
	t.Logf("%s: metrics GET :%d%s -> %d, %d series lines", p.name, metricsPort, metricsPath, status, strings.Count(body, "\n"))
}

func nameOf(o map[string]any) string {
	meta, _ := o["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	return name
}

// The kubelet runs preStop, then sends SIGTERM and waits terminationGracePeriodSeconds in total.
func checkDrain(t *testing.T, p *plan, rn *running) {
	spec := p.deployment.Spec.Template.Spec
	budget := time.Duration(*spec.TerminationGracePeriodSeconds-p.container.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	began := time.Now()
	if err := rn.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rn.exited:
	case <-time.After(3 * time.Second):
		// Still draining after 3 s with no request in flight: show what it is waiting for.
		out, _ := exec.Command("ss", "-tanp").CombinedOutput()
		var mine []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, fmt.Sprintf("pid=%d,", rn.cmd.Process.Pid)) {
				mine = append(mine, line)
			}
		}
		t.Logf("%s: still running 3s after SIGTERM; its sockets:\n%s", p.name, strings.Join(mine, "\n"))
	}
	select {
	case <-rn.exited:
		if rn.err != nil {
			t.Errorf("%s: exited with %v after SIGTERM\n%s", p.name, rn.err, rn.output.tail())
			return
		}
		t.Logf("%s: SIGTERM -> clean exit in %s (budget %s)", p.name, time.Since(began).Round(time.Millisecond), budget)
	case <-time.After(budget - time.Since(began)):
		t.Errorf("%s: still running %s after SIGTERM; the kubelet would SIGKILL it", p.name, budget)
	}
}

// The gateway's rendered upstreams (discovery mode, URLs, ports) reach the services: its /health sees every
// built service healthy, and a request routed to the user-service (the JWKS) comes back.
func checkGatewayWiring(t *testing.T, gw *plan, plans []*plan) {
	base := fmt.Sprintf("http://127.0.0.1:%d", gw.port)
	var health struct {
		Services map[string]string `json:"services"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, body, _, err := get(base + "/health")
		if err == nil && status == 200 && json.Unmarshal([]byte(body), &health) == nil {
			ok := true
			for _, p := range plans {
				if p != gw && health.Services[p.name] != "healthy" {
					ok = false
				}
			}
			if ok {
				t.Logf("%s: GET /health sees %v", gw.name, health.Services)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET /health -> %d %s %v; want every built service healthy", gw.name, status, body, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, p := range plans {
		if p.name != "user-service" {
			continue
		}
		status, body, _, err := get(base + "/.well-known/jwks.json")
		if err != nil || status != 200 || !strings.Contains(body, `"keys"`) {
			t.Fatalf("%s: GET /.well-known/jwks.json through the gateway -> %d %v %s", gw.name, status, err, body)
		}
		t.Logf("%s: GET /.well-known/jwks.json routed to user-service -> %d", gw.name, status)
	}
}

// runHelmTests runs the chart's `helm test` pods' commands against the running system, so the test a user
// runs after `helm install` is itself known to pass on a healthy release.
func runHelmTests(t *testing.T, r *Render, gw *plan, hostPorts map[string]int) {
	for _, pod := range r.Pods {
		if pod.Annotations["helm.sh/hook"] != "test" {
			continue
		}
		for _, c := range pod.Spec.Containers {
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = clusterURL.ReplaceAllStringFunc(e.Value, func(hostPort string) string {
					if port, ok := hostPorts[clusterURL.FindStringSubmatch(hostPort)[1]]; ok {
						return "127.0.0.1:" + strconv.Itoa(port)
					}
					return hostPort
				})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, err := command(ctx, gw.dir, c.Command, env).CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("helm test pod %s failed: %v\n%s", pod.Name, err, out)
			}
			t.Logf("helm test pod %s passes:\n%s", pod.Name, strings.TrimSpace(string(out)))
		}
	}
}

// measureMemory puts a bounded load on every process (readiness, which queries the database, metrics where
// Prometheus scrapes them and the OpenAPI document: the routes no rate limit guards; the gateway's proxied
// routes are rate limited per client, so its proxy path is measured by its own benchmarks) and compares each process's peak RSS with
// the memory limit its Deployment renders, with NODE_OPTIONS as rendered.
func measureMemory(t *testing.T, gw *plan, plans []*plan, procs map[string]*running) {
	const workers, perWorker = 16, 500
	transport := &http.Transport{MaxIdleConnsPerHost: workers}
	defer transport.CloseIdleConnections() // a client that is done hangs up, as a load balancer drains
	client := &http.Client{Timeout: 5 * time.Second, Transport: transport}
	var urls []string
	for _, p := range plans {
		for _, path := range []string{p.container.ReadinessProbe.HTTPGet.Path, "/openapi.json"} {
			urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d%s", p.port, path))
		}
		urls = append(urls, p.metricsURL)
	}
	began := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	failures := 0
	statuses := map[string]int{}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWorker && time.Since(began) < 60*time.Second; i++ {
				res, err := client.Get(urls[(w+i)%len(urls)])
				if err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
				if err != nil || res.StatusCode != 200 {
					mu.Lock()
					failures++
					if err != nil {
						statuses[err.Error()]++
					} else {
						statuses[fmt.Sprintf("%d %s", res.StatusCode, res.Request.URL.Path)]++
					}
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	total := workers * perWorker
	t.Logf("load: %d requests (16 at a time) in %s, %d failed %v", total, time.Since(began).Round(time.Millisecond), failures, statuses)
	if failures > total/100 {
		t.Errorf("%d of %d requests failed under load", failures, total)
	}
	for _, p := range plans {
		limit := p.container.Resources.Limits.Memory().Value()
		peak := peakRSS(t, procs[p.name].cmd.Process.Pid)
		t.Logf("%s: peak RSS %d MiB under load (limit %d MiB, request %d MiB, NODE_OPTIONS=%q)", p.name, peak>>20, limit>>20,
			p.container.Resources.Requests.Memory().Value()>>20, p.env["NODE_OPTIONS"])
		if peak >= limit*85/100 {
			t.Errorf("%s: peak RSS %d MiB is within 15%% of its %d MiB limit", p.name, peak>>20, limit>>20)
		}
	}
}

// peakRSS is the process's high-water resident set (VmHWM) in bytes, from /proc (Linux).
func peakRSS(t *testing.T, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading memory of pid %d: %v", pid, err)
	}
	m := regexp.MustCompile(`(?m)^VmHWM:\s+(\d+) kB`).FindStringSubmatch(string(data))
	if m == nil {
		t.Fatalf("no VmHWM for pid %d", pid)
	}
	kb, _ := strconv.ParseInt(m[1], 10, 64)
	return kb << 10
}

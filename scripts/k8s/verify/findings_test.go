package verify

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// What the first install on a live cluster found, held by the rendered output. The live suite
// (test/cluster) checks the same on a cluster.

// Every user-service pod gets the same signing keys: from a Secret the release renders (a valid private
// Ed25519 JWK whose x is the public key of its d) or from envFromSecret, never a key of its own per pod.
func TestPolicySigningKeysShared(t *testing.T) {
	for _, r := range renders(t) {
		for _, d := range r.Deployments {
			if d.Spec.Template.Labels["app.kubernetes.io/name"] != "user-service" {
				continue
			}
			c := d.Spec.Template.Spec.Containers[0]
			var secrets []string
			for _, from := range c.EnvFrom {
				if from.SecretRef != nil {
					secrets = append(secrets, from.SecretRef.Name)
				}
			}
			if len(secrets) != 1 {
				t.Errorf("%s: Deployment %s reads %d Secrets for its signing keys, want 1", r.Case, d.Name, len(secrets))
				continue
			}
			s := r.Secret(secrets[0])
			if s == nil {
				continue // an existing Secret (envFromSecret), made outside the release
			}
			if s.Annotations["helm.sh/resource-policy"] != "keep" {
				t.Errorf("%s: Secret %s is not kept (helm.sh/resource-policy: keep): an uninstall would void every token", r.Case, s.Name)
			}
			checkPrivateJwks(t, r.Case+": Secret "+s.Name, s.Data["JWT_PRIVATE_KEYS"])
		}
	}
}

func checkPrivateJwks(t *testing.T, where string, raw []byte) {
	t.Helper()
	var keys []map[string]string
	if err := json.Unmarshal(raw, &keys); err != nil || len(keys) == 0 {
		t.Errorf("%s: JWT_PRIVATE_KEYS is not a non-empty JSON array of JWKs: %v", where, err)
		return
	}
	for _, k := range keys {
		if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["kid"] == "" {
			t.Errorf("%s: key %v is not an Ed25519 JWK with a kid", where, k)
			continue
		}
		d, errD := base64.RawURLEncoding.DecodeString(k["d"])
		x, errX := base64.RawURLEncoding.DecodeString(k["x"])
		if errD != nil || errX != nil || len(d) != ed25519.SeedSize || len(x) != ed25519.PublicKeySize {
			t.Errorf("%s: key %s: d or x is not 32 bytes of base64url", where, k["kid"])
			continue
		}
		public := ed25519.NewKeyFromSeed(d).Public().(ed25519.PublicKey)
		if !public.Equal(ed25519.PublicKey(x)) {
			t.Errorf("%s: key %s: x is not the public key of d", where, k["kid"])
		}
	}
}

// The database password never goes into a URL (nothing to URL-encode): PGPASSWORD comes from the Secret,
// DATABASE_URL carries the service's own role, and its host is a ClusterIP Service (a headless name would
// be cached by resolvers and point at a replaced pod).
func TestPolicyDatabaseConnection(t *testing.T) {
	url := regexp.MustCompile(`^postgres://([a-z_][a-z0-9_]*)@([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:5432/([a-z_][a-z0-9_]*)$`)
	for _, r := range renders(t) {
		for _, d := range r.Deployments {
			for _, c := range allContainers(d.Spec.Template.Spec) {
				env := map[string]corev1.EnvVar{}
				for _, e := range c.Env {
					env[e.Name] = e
				}
				dbURL, ok := env["DATABASE_URL"]
				if !ok || dbURL.ValueFrom != nil {
					continue // no database, or an external one from its Secret
				}
				if pw := env["PGPASSWORD"]; pw.ValueFrom == nil || pw.ValueFrom.SecretKeyRef == nil {
					t.Errorf("%s: %s/%s has no PGPASSWORD from a Secret", r.Case, d.Name, c.Name)
				}
				m := url.FindStringSubmatch(dbURL.Value)
				if m == nil {
					t.Errorf("%s: %s/%s DATABASE_URL %q is not postgres://<role>@<service>.<ns>.svc.cluster.local:5432/<db>", r.Case, d.Name, c.Name, dbURL.Value)
					continue
				}
				if m[1] == "postgres" || m[1] != m[4] {
					t.Errorf("%s: %s/%s connects as %q to %q: want the service's own role, named as its database", r.Case, d.Name, c.Name, m[1], m[4])
				}
				var svc *corev1.Service
				for i, s := range r.Services {
					if s.Name == m[2] && s.Namespace == m[3] {
						svc = &r.Services[i]
					}
				}
				if svc == nil || svc.Spec.ClusterIP == "None" {
					t.Errorf("%s: %s/%s reaches its database through %s, which is not a ClusterIP Service of the release", r.Case, d.Name, c.Name, m[2])
				}
			}
		}
		// The database pods never hand the service's role to the image's superuser bootstrap.
		for _, s := range r.StatefulSets {
			for _, c := range allContainers(s.Spec.Template.Spec) {
				for _, e := range c.Env {
					if e.Name == "POSTGRES_USER" {
						t.Errorf("%s: StatefulSet %s/%s sets POSTGRES_USER (the image makes that role a superuser)", r.Case, s.Name, c.Name)
					}
				}
			}
		}
	}
}

// The defaults match what k8s/addons.sh installs: the Gateway's class and the ingress controller's namespace.
func TestPolicyDefaultsMatchAddons(t *testing.T) {
	root := os.Getenv("REPO_ROOT")
	addons, err := os.ReadFile(filepath.Join(root, "k8s/addons.sh"))
	if err != nil {
		t.Fatal(err)
	}
	ns := regexp.MustCompile(`helm upgrade --install traefik [^\n]*\n(?:[^\n]*\n)*?\s*--namespace ([a-z0-9-]+)`).FindSubmatch(addons)
	if ns == nil {
		t.Fatal("k8s/addons.sh: no Traefik namespace found")
	}
	namespace := string(ns[1])
	for _, r := range renders(t) {
		if r.Case != "default" {
			continue
		}
		for _, o := range r.Other {
			if o["kind"] == "Gateway" {
				class, _ := o["spec"].(map[string]any)["gatewayClassName"].(string)
				if class != "traefik" {
					t.Errorf("default: Gateway class %q, but k8s/addons.sh installs Traefik (GatewayClass traefik)", class)
				}
			}
		}
		found := false
		for _, np := range r.NetworkPolicies {
			for _, rule := range np.Spec.Ingress {
				for _, peer := range rule.From {
					if peer.NamespaceSelector != nil {
						if v := peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]; strings.Contains(np.Name, "gateway") && v != "monitoring" {
							found = true
							if v != namespace {
								t.Errorf("default: NetworkPolicy %s admits namespace %q, but k8s/addons.sh installs Traefik in %q", np.Name, v, namespace)
							}
						}
					}
				}
			}
		}
		if !found {
			t.Error("default: no NetworkPolicy admits the ingress controller's namespace to the gateway")
		}
	}
}

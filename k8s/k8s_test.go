// Package k8s holds visitord's kustomize manifests: base/, overlays/dev,
// overlays/prod and components/geoip. Its test renders each kustomization as
// `kubectl apply -k` would, decodes every object strictly into the Kubernetes
// API types, and checks what the service relies on.
package k8s

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/visitord/visitord/internal/config"
	"github.com/visitord/visitord/internal/redisstore"
)

// shutdownSeconds is cmd/visitord's shutdownTimeout: how long visitord drains
// in-flight requests after SIGTERM.
const shutdownSeconds = 15

// secretName is the Secret every overlay expects to exist (base/secret.example.yaml).
const secretName = "visitord-secrets"

// kinds are the only objects the manifests may hold, each with its API type.
var kinds = map[string]func() any{
	"apps/v1/Deployment":                     func() any { return new(appsv1.Deployment) },
	"apps/v1/StatefulSet":                    func() any { return new(appsv1.StatefulSet) },
	"v1/Service":                             func() any { return new(corev1.Service) },
	"v1/ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                              func() any { return new(corev1.Secret) },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"policy/v1/PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return new(networkingv1.NetworkPolicy) },
	"v1/PersistentVolumeClaim":               func() any { return new(corev1.PersistentVolumeClaim) },
}

// decode decodes one YAML document strictly: an unknown apiVersion/kind, an
// unknown or duplicated field, or a malformed quantity is an error.
func decode(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	newObj := kinds[tm.APIVersion+"/"+tm.Kind]
	if newObj == nil {
		return nil, fmt.Errorf("unexpected object %s %s", tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

// objects is one rendered kustomization, by kind and name.
type objects struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs         map[string]*policyv1.PodDisruptionBudget
	netpols      map[string]*networkingv1.NetworkPolicy
	namespaces   map[string]bool // of every object
	secrets      int
}

// render runs kustomize on dir, as `kubectl apply -k dir` does, and decodes
// every object it produces.
func render(tb testing.TB, dir string) objects {
	tb.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		tb.Fatalf("kustomize build %s: %v", dir, err)
	}
	o := objects{
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		netpols: map[string]*networkingv1.NetworkPolicy{}, namespaces: map[string]bool{},
	}
	if m.Size() == 0 {
		tb.Fatalf("%s renders no object", dir)
	}
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			tb.Fatalf("%s: %s: %v", dir, r.CurId(), err)
		}
		obj, err := decode(doc)
		if err != nil {
			tb.Fatalf("%s: %s: %v", dir, r.CurId(), err)
		}
		var meta metav1.ObjectMeta
		switch v := obj.(type) {
		case *appsv1.Deployment:
			o.deployments[v.Name], meta = v, v.ObjectMeta
		case *appsv1.StatefulSet:
			o.statefulSets[v.Name], meta = v, v.ObjectMeta
		case *corev1.Service:
			o.services[v.Name], meta = v, v.ObjectMeta
		case *corev1.ConfigMap:
			o.configMaps[v.Name], meta = v, v.ObjectMeta
		case *autoscalingv2.HorizontalPodAutoscaler:
			o.hpas[v.Name], meta = v, v.ObjectMeta
		case *policyv1.PodDisruptionBudget:
			o.pdbs[v.Name], meta = v, v.ObjectMeta
		case *networkingv1.NetworkPolicy:
			o.netpols[v.Name], meta = v, v.ObjectMeta
		case *corev1.Secret:
			o.secrets++
			meta = v.ObjectMeta
		default:
			tb.Fatalf("%s: %s: no check for this kind", dir, r.CurId())
		}
		o.namespaces[meta.Namespace] = true
	}
	return o
}

func TestDecodeIsStrict(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
	}{
		{"unknown field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n"},
		{"duplicate field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nmetadata: {name: y}\n"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n"},
		{"wrong version", "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\n"},
		{"bad quantity", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: x}\nspec: {resources: {requests: {storage: lots}}}\n"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decode([]byte(tc.doc)); err == nil {
				t.Fatalf("decode accepted:\n%s", tc.doc)
			}
		})
	}
}

func TestBase(t *testing.T) {
	o := render(t, "base")
	checkVisitord(t, o, 2)
	if got := o.namespaces; len(got) != 1 || !got[""] {
		t.Errorf("base sets namespaces %v; the overlays set them", keys(got))
	}
}

func TestDev(t *testing.T) {
	o := render(t, filepath.Join("overlays", "dev"))
	checkVisitord(t, o, 2)
	checkNamespace(t, o, "visitord-dev")

	redis := o.statefulSets["redis"]
	if redis == nil {
		t.Fatalf("no StatefulSet redis (have %v)", keys(o.statefulSets))
	}
	if got := ptrOr(redis.Spec.Replicas, 1); got != 1 {
		t.Errorf("redis replicas = %d, want 1", got)
	}
	checkPodSpec(t, "StatefulSet redis", redis.Spec.Template.Spec)
	c := redis.Spec.Template.Spec.Containers[0]
	args := strings.Join(append(slices.Clone(c.Command), c.Args...), " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"} {
		if !strings.Contains(args, want) {
			t.Errorf("redis runs %q, want %q in it", args, want)
		}
	}
	// The append-only file lives on the claim.
	dir := flagValue(c.Args, "--dir")
	if len(redis.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("redis has %d volumeClaimTemplates, want 1", len(redis.Spec.VolumeClaimTemplates))
	}
	claim := redis.Spec.VolumeClaimTemplates[0]
	if m := mountOf(c, claim.Name); m == nil || m.MountPath != dir || m.ReadOnly {
		t.Errorf("redis --dir %q is not the writable mount of claim %q (%+v)", dir, claim.Name, m)
	}
	if q := claim.Spec.Resources.Requests[corev1.ResourceStorage]; q.IsZero() {
		t.Errorf("redis claim requests no storage")
	}

	svc := o.services["redis"]
	if svc == nil {
		t.Fatal("no Service redis")
	}
	if redis.Spec.ServiceName != svc.Name {
		t.Errorf("StatefulSet serviceName %q, want %q", redis.Spec.ServiceName, svc.Name)
	}
	checkSelects(t, "Service redis", metav1.SetAsLabelSelector(svc.Spec.Selector), redis.Spec.Template.Labels)
	checkServicePort(t, svc, 6379, c, 6379)

	env := effectiveEnv(t, o, visitordContainer(t, o))
	if got, want := env["VISITORD_REDIS_URL"], "redis://redis:6379/0"; got != want {
		t.Errorf("VISITORD_REDIS_URL = %q, want %q", got, want)
	}
	ro, err := redisstore.Options(env["VISITORD_REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ro.Addrs, []string{svc.Name + ":6379"}; !slices.Equal(got, want) || ro.IsClusterMode {
		t.Errorf("Redis addresses %v (cluster %v), want %v on the Service", got, ro.IsClusterMode, want)
	}

	// Only visitord reaches Redis.
	np := o.netpols["redis"]
	if np == nil {
		t.Fatal("no NetworkPolicy redis")
	}
	checkSelects(t, "NetworkPolicy redis", &np.Spec.PodSelector, redis.Spec.Template.Labels)
	if len(np.Spec.Egress) != 0 || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("NetworkPolicy redis lets Redis reach out: %+v", np.Spec)
	}
	for _, rule := range np.Spec.Ingress {
		for _, peer := range rule.From {
			if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil {
				t.Errorf("NetworkPolicy redis admits %+v, want visitord's pods only", peer)
				continue
			}
			checkSelects(t, "NetworkPolicy redis peer", peer.PodSelector, o.deployments["visitord"].Spec.Template.Labels)
		}
	}
}

func TestProd(t *testing.T) {
	o := render(t, filepath.Join("overlays", "prod"))
	checkVisitord(t, o, 3)
	checkNamespace(t, o, "visitord")

	if got := o.hpas["visitord"].Spec.MinReplicas; got == nil || *got < 3 {
		t.Errorf("HPA minReplicas = %v, want at least 3", ptrOr(got, 1))
	}
	c := visitordContainer(t, o)
	if ref, _, _ := strings.Cut(c.Image, "@"); !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") || strings.HasSuffix(ref, ":latest") {
		t.Errorf("prod image %q: want an explicit release tag or digest", c.Image)
	}
	env := effectiveEnv(t, o, c)
	ro, err := redisstore.Options(env["VISITORD_REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	if !ro.IsClusterMode || len(ro.Addrs) < 3 {
		t.Errorf("VISITORD_REDIS_URL %q: cluster %v with %d nodes, want a Redis Cluster node list", env["VISITORD_REDIS_URL"], ro.IsClusterMode, len(ro.Addrs))
	}
	if env["VISITORD_TRUSTED_PROXIES"] == "" {
		t.Error("VISITORD_TRUSTED_PROXIES is not set: behind the ingress every client would be the ingress")
	}
	cfg := loadConfig(t, o, c)
	if len(cfg.TrustedProxies) == 0 {
		t.Error("no trusted proxy loaded")
	}

	// Tighter than the base: more reserved, the same ceiling.
	base := visitordContainer(t, render(t, "base"))
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, baseReq := c.Resources.Requests[name], base.Resources.Requests[name]
		if req.Cmp(baseReq) <= 0 {
			t.Errorf("prod %s request %s is not above the base's %s", name, req.String(), baseReq.String())
		}
	}
}

func TestGeoIPComponent(t *testing.T) {
	// An overlay with the component, as README.md tells to write one
	// (kustomize takes relative paths only).
	dir := t.TempDir()
	rel := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		r, err := filepath.Rel(dir, a)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%q]\ncomponents: [%q]\n",
		rel(filepath.Join("overlays", "prod")), rel(filepath.Join("components", "geoip")))
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	o := render(t, dir)
	checkVisitord(t, o, 3)
	c := visitordContainer(t, o)
	env := effectiveEnv(t, o, c)
	db := env["VISITORD_GEOIP_DB"]
	if db != "/geoip/GeoLite2-City.mmdb" {
		t.Errorf("VISITORD_GEOIP_DB = %q, want /geoip/GeoLite2-City.mmdb", db)
	}
	m := mountAt(c, filepath.Dir(db))
	if m == nil || !m.ReadOnly {
		t.Fatalf("%s is not on a read-only mount (%+v)", db, m)
	}
	v := volume(o.deployments["visitord"].Spec.Template.Spec, m.Name)
	if v == nil || v.PersistentVolumeClaim == nil || !v.PersistentVolumeClaim.ReadOnly {
		t.Errorf("GeoIP volume %+v: want a read-only PersistentVolumeClaim", v)
	}
	// Without the component there is no GeoIP variable: visitord fails at
	// start on a database path that is not there.
	if got := effectiveEnv(t, render(t, "base"), visitordContainer(t, render(t, "base")))["VISITORD_GEOIP_DB"]; got != "" {
		t.Errorf("base sets VISITORD_GEOIP_DB = %q", got)
	}
}

func TestSecretTemplate(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("base", "secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := obj.(*corev1.Secret)
	if !ok {
		t.Fatalf("secret.example.yaml holds a %T", obj)
	}
	if s.Name != secretName {
		t.Errorf("the template's Secret is %q; the Deployment reads %q", s.Name, secretName)
	}
	names := []string{"VISITORD_COOKIE_SECRET", "VISITORD_DATA_KEY", "VISITORD_INDEX_KEY"}
	for _, name := range names {
		if _, ok := s.StringData[name]; !ok {
			t.Errorf("the template lacks %s", name)
		}
	}
	// Applied unchanged, the template must stop visitord rather than run it
	// on known secrets.
	_, err = config.Load(func(k string) string {
		if k == "VISITORD_REDIS_URL" {
			return "redis://redis:6379/0"
		}
		return s.StringData[k]
	})
	if err == nil {
		t.Fatal("config.Load accepts the template's placeholder secrets")
	}
	for _, name := range names {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("config.Load does not reject the placeholder %s: %v", name, err)
		}
	}
	// The commands the template gives make values config.Load accepts.
	if _, err := config.Load(fakeSecrets(map[string]string{"VISITORD_REDIS_URL": "redis://redis:6379/0",
		"VISITORD_SITES": filepath.Join("base", "sites.yaml")})); err != nil {
		t.Errorf("secrets made as secret.example.yaml says: %v", err)
	}
}

// checkVisitord checks the service's objects in one rendered kustomization.
func checkVisitord(t *testing.T, o objects, replicas int32) {
	t.Helper()
	if o.secrets != 0 {
		t.Errorf("a kustomization renders %d Secret(s): secrets are created by hand (secret.example.yaml)", o.secrets)
	}
	d := o.deployments["visitord"]
	if d == nil {
		t.Fatalf("no Deployment visitord (have %v)", keys(o.deployments))
	}
	if got := ptrOr(d.Spec.Replicas, 1); got != replicas {
		t.Errorf("replicas = %d, want %d", got, replicas)
	}
	pod := d.Spec.Template
	checkSelects(t, "Deployment selector", d.Spec.Selector, pod.Labels)
	if s := d.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update %+v: want maxUnavailable 0, so a rollout never drops capacity", s)
	}
	checkPodSpec(t, "Deployment visitord", pod.Spec)

	sc := pod.Spec.SecurityContext
	if sc == nil || ptrOr(sc.RunAsUser, 0) != 65532 {
		t.Errorf("pod runAsUser = %v, want 65532 (distroless nonroot)", sc)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if c.SecurityContext.RunAsUser != nil && *c.SecurityContext.RunAsUser != 65532 {
		t.Errorf("container runAsUser = %d, want 65532", *c.SecurityContext.RunAsUser)
	}
	port := containerPort(c, "http")
	if port != 8080 {
		t.Errorf("container port http = %d, want 8080 (VISITORD_ADDR)", port)
	}
	// /metrics and pprof are served on their own port only (issue 18).
	metricsPort := containerPort(c, "metrics")
	if metricsPort != 9090 || metricsPort == port {
		t.Errorf("container port metrics = %d, want 9090 (VISITORD_METRICS_ADDR), apart from http %d", metricsPort, port)
	}

	// Probes: ready while Redis answers, alive while the process does.
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"startupProbe", c.StartupProbe, "/healthz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an HTTP GET of %s", p.name, p.path)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || portNumber(c, g.Port.String()) != port {
			t.Errorf("%s: GET %s on port %s, want GET %s on %d", p.name, g.Path, g.Port.String(), p.path, port)
		}
	}

	// Draining: endpoints drop the pod during the preStop sleep, then visitord
	// drains for at most shutdownSeconds, all within the grace period.
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("no preStop sleep handler (distroless has no shell for exec sleep)")
	}
	if c.Lifecycle.PreStop.Exec != nil {
		t.Error("preStop exec: the distroless image has no shell or sleep binary")
	}
	sleep := c.Lifecycle.PreStop.Sleep.Seconds
	grace := ptrOr(pod.Spec.TerminationGracePeriodSeconds, 30)
	if sleep < 1 || sleep+shutdownSeconds >= grace {
		t.Errorf("preStop sleep %ds + shutdown %ds must be positive and below terminationGracePeriodSeconds %d", sleep, shutdownSeconds, grace)
	}

	// Prometheus scrapes the metrics port, never the public one.
	a := pod.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" || a["prometheus.io/port"] != strconv.Itoa(int(metricsPort)) {
		t.Errorf("Prometheus annotations %v: want scrape true, path /metrics, port %d", a, metricsPort)
	}

	// Configuration: the ConfigMaps exist, the Secret is the template's, the
	// sites file is mounted where VISITORD_SITES says, and it all loads.
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			if o.configMaps[ef.ConfigMapRef.Name] == nil {
				t.Errorf("envFrom ConfigMap %q is not rendered", ef.ConfigMapRef.Name)
			}
		case ef.SecretRef != nil:
			if ef.SecretRef.Name != secretName || ptrOr(ef.SecretRef.Optional, false) {
				t.Errorf("envFrom Secret %q (optional %v), want the required %q", ef.SecretRef.Name, ptrOr(ef.SecretRef.Optional, false), secretName)
			}
		}
	}
	if !slices.ContainsFunc(c.EnvFrom, func(ef corev1.EnvFromSource) bool { return ef.SecretRef != nil }) {
		t.Errorf("no envFrom of Secret %q", secretName)
	}
	env := effectiveEnv(t, o, c)
	if got, want := env["VISITORD_METRICS_ADDR"], ":"+strconv.Itoa(int(metricsPort)); got != want {
		t.Errorf("VISITORD_METRICS_ADDR = %q, want %q (the metrics container port)", got, want)
	}
	if got := env["VISITORD_SITES"]; got != "/etc/visitord/sites.yaml" {
		t.Errorf("VISITORD_SITES = %q, want /etc/visitord/sites.yaml", got)
	}
	if _, err := sitesFile(o, pod.Spec, c, env["VISITORD_SITES"]); err != nil {
		t.Error(err)
	}
	loadConfig(t, o, c)

	svc := o.services["visitord"]
	if svc == nil {
		t.Fatal("no Service visitord")
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service type %q, want ClusterIP", svc.Spec.Type)
	}
	checkSelects(t, "Service visitord", metav1.SetAsLabelSelector(svc.Spec.Selector), pod.Labels)
	checkServicePort(t, svc, 80, c, 8080)
	for _, sp := range svc.Spec.Ports {
		if sp.TargetPort.String() == "metrics" || portNumber(c, sp.TargetPort.String()) == metricsPort {
			t.Errorf("Service visitord exposes the metrics port: %+v", sp)
		}
	}

	hpa := o.hpas["visitord"]
	if hpa == nil {
		t.Fatal("no HorizontalPodAutoscaler visitord")
	}
	ref := hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
		t.Errorf("HPA scales %+v, want Deployment %s", ref, d.Name)
	}
	minR := ptrOr(hpa.Spec.MinReplicas, 1)
	if minR < 2 || hpa.Spec.MaxReplicas != 10 || replicas < minR || replicas > hpa.Spec.MaxReplicas {
		t.Errorf("HPA %d..%d with %d replicas: want at least 2, at most 10, the replicas within", minR, hpa.Spec.MaxReplicas, replicas)
	}
	if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].Resource == nil ||
		hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU ||
		hpa.Spec.Metrics[0].Resource.Target.Type != autoscalingv2.UtilizationMetricType ||
		ptrOr(hpa.Spec.Metrics[0].Resource.Target.AverageUtilization, 0) != 70 {
		t.Errorf("HPA metrics %+v, want CPU utilization 70%%", hpa.Spec.Metrics)
	}

	pdb := o.pdbs["visitord"]
	if pdb == nil {
		t.Fatal("no PodDisruptionBudget visitord")
	}
	checkSelects(t, "PodDisruptionBudget", pdb.Spec.Selector, pod.Labels)
	if m := pdb.Spec.MinAvailable; m == nil || m.IntValue() != 1 || int32(m.IntValue()) >= minR {
		t.Errorf("PDB minAvailable %v: want 1, below the %d replicas, so nodes can drain", m, minR)
	}

	checkNetworkPolicy(t, o.netpols["visitord"], pod.Labels, port, metricsPort)
}

// checkNetworkPolicy: in, the public port, and the metrics port from Prometheus
// only; out, DNS, Redis and HTTPS.
func checkNetworkPolicy(t *testing.T, np *networkingv1.NetworkPolicy, podLabels map[string]string, port, metricsPort int32) {
	t.Helper()
	if np == nil {
		t.Fatal("no NetworkPolicy visitord")
	}
	checkSelects(t, "NetworkPolicy visitord", &np.Spec.PodSelector, podLabels)
	for _, pt := range []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress} {
		if !slices.Contains(np.Spec.PolicyTypes, pt) {
			t.Errorf("NetworkPolicy visitord does not restrict %s", pt)
		}
	}
	portsOf := func(ports []networkingv1.NetworkPolicyPort) []string {
		var out []string
		for _, p := range ports {
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if p.Port == nil || p.EndPort != nil {
				out = append(out, string(proto)+"/any")
				continue
			}
			out = append(out, fmt.Sprintf("%s/%s", proto, p.Port.String()))
		}
		return out
	}
	if len(np.Spec.Ingress) == 0 {
		t.Error("NetworkPolicy visitord admits nothing")
	}
	public, metrics := fmt.Sprintf("TCP/%d", port), fmt.Sprintf("TCP/%d", metricsPort)
	admitted := map[string]bool{}
	for _, rule := range np.Spec.Ingress {
		got := portsOf(rule.Ports)
		if !slices.Equal(got, []string{public}) && !slices.Equal(got, []string{metrics}) {
			t.Errorf("ingress ports %v, want either [%s] or [%s]", got, public, metrics)
			continue
		}
		admitted[got[0]] = true
		if len(rule.From) == 0 {
			t.Error("an ingress rule admits every source")
		}
		for _, peer := range rule.From {
			if peer.NamespaceSelector == nil || peer.IPBlock != nil {
				t.Errorf("ingress peer %+v: want a namespace (ingress controller, Prometheus)", peer)
			}
			if got[0] == metrics && (peer.PodSelector == nil || peer.PodSelector.MatchLabels["app.kubernetes.io/name"] != "prometheus") {
				t.Errorf("the metrics port admits %+v, want Prometheus's pods only", peer)
			}
		}
	}
	if !admitted[public] || !admitted[metrics] {
		t.Errorf("ingress admits %v, want both %s and %s", admitted, public, metrics)
	}
	allowed := []string{"UDP/53", "TCP/53", "TCP/6379", "TCP/26379", "TCP/443"}
	var got []string
	for _, rule := range np.Spec.Egress {
		if len(rule.Ports) == 0 {
			t.Errorf("an egress rule allows every port: %+v", rule)
		}
		got = append(got, portsOf(rule.Ports)...)
	}
	slices.Sort(got)
	want := slices.Clone(allowed)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("egress ports %v, want exactly %v", got, want)
	}
}

// checkPodSpec checks what every workload's pods must hold: non-root, no
// privilege, a read-only root file system, RuntimeDefault seccomp and
// resources for every container.
func checkPodSpec(t *testing.T, what string, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if ptrOr(spec.AutomountServiceAccountToken, true) {
		t.Errorf("%s mounts a service account token it never uses", what)
	}
	containers := append(slices.Clone(spec.InitContainers), spec.Containers...)
	if len(spec.Containers) == 0 {
		t.Fatalf("%s has no container", what)
	}
	for _, c := range containers {
		name := what + " container " + c.Name
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s has no securityContext", name)
			continue
		}
		if !ptrOr(sc.RunAsNonRoot, ptrOr(psc.RunAsNonRoot, false)) {
			t.Errorf("%s: runAsNonRoot is not true", name)
		}
		if ptrOr(sc.RunAsUser, ptrOr(psc.RunAsUser, 0)) == 0 {
			t.Errorf("%s: runs as uid 0", name)
		}
		if ptrOr(sc.AllowPrivilegeEscalation, true) {
			t.Errorf("%s: allowPrivilegeEscalation is not false", name)
		}
		if ptrOr(sc.Privileged, false) {
			t.Errorf("%s: privileged", name)
		}
		if !ptrOr(sc.ReadOnlyRootFilesystem, false) {
			t.Errorf("%s: readOnlyRootFilesystem is not true", name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: capabilities %+v, want drop ALL and no add", name, sc.Capabilities)
		}
		seccomp := psc.SeccompProfile
		if sc.SeccompProfile != nil {
			seccomp = sc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: seccompProfile %+v, want RuntimeDefault", name, seccomp)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[r]
			limit, okLimit := c.Resources.Limits[r]
			if !okReq || !okLimit || req.IsZero() || limit.IsZero() {
				t.Errorf("%s: %s request %q and limit %q, want both", name, r, req.String(), limit.String())
				continue
			}
			if req.Cmp(limit) > 0 {
				t.Errorf("%s: %s request %s above its limit %s", name, r, req.String(), limit.String())
			}
		}
	}
}

func checkNamespace(t *testing.T, o objects, want string) {
	t.Helper()
	if got := keys(o.namespaces); !slices.Equal(got, []string{want}) {
		t.Errorf("namespaces %v, want every object in %q", got, want)
	}
}

func checkSelects(t *testing.T, what string, sel *metav1.LabelSelector, podLabels map[string]string) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if s.Empty() || !s.Matches(labels.Set(podLabels)) {
		t.Errorf("%s %q does not select the pods %v", what, s.String(), podLabels)
	}
}

func checkServicePort(t *testing.T, svc *corev1.Service, port int32, c corev1.Container, containerPort int32) {
	t.Helper()
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service %s has %d ports, want 1", svc.Name, len(svc.Spec.Ports))
	}
	p := svc.Spec.Ports[0]
	if p.Port != port || portNumber(c, p.TargetPort.String()) != containerPort {
		t.Errorf("Service %s: %d → %s, want %d → container port %d", svc.Name, p.Port, p.TargetPort.String(), port, containerPort)
	}
}

func visitordContainer(t *testing.T, o objects) corev1.Container {
	t.Helper()
	d := o.deployments["visitord"]
	if d == nil || len(d.Spec.Template.Spec.Containers) == 0 {
		t.Fatal("no Deployment visitord with a container")
	}
	return d.Spec.Template.Spec.Containers[0]
}

// effectiveEnv is the container's environment as the kubelet builds it:
// envFrom in order (the Secret's keys replaced by test values), then env.
func effectiveEnv(t *testing.T, o objects, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm := o.configMaps[ef.ConfigMapRef.Name]
			if cm == nil {
				t.Fatalf("envFrom ConfigMap %q is not rendered", ef.ConfigMapRef.Name)
			}
			for k, v := range cm.Data {
				env[ef.Prefix+k] = v
			}
		case ef.SecretRef != nil:
			get := fakeSecrets(nil)
			for _, k := range []string{"VISITORD_COOKIE_SECRET", "VISITORD_DATA_KEY", "VISITORD_INDEX_KEY"} {
				env[ef.Prefix+k] = get(k)
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Fatalf("env %s uses valueFrom: not modelled by this test", e.Name)
		}
		env[e.Name] = e.Value
	}
	return env
}

// loadConfig loads the container's environment with config.Load, the sites
// file read from its ConfigMap, and checks that every VISITORD_ variable set
// is one config.Load reads (a misspelt name would be silently ignored).
func loadConfig(t *testing.T, o objects, c corev1.Container) config.Config {
	t.Helper()
	env := effectiveEnv(t, o, c)
	sites, err := sitesFile(o, o.deployments["visitord"].Spec.Template.Spec, c, env["VISITORD_SITES"])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sites.yaml")
	if err := os.WriteFile(path, sites, 0o600); err != nil {
		t.Fatal(err)
	}
	read := map[string]bool{}
	cfg, err := config.Load(func(k string) string {
		read[k] = true
		if k == "VISITORD_SITES" {
			return path
		}
		return env[k]
	})
	if err != nil {
		t.Fatalf("config.Load of the rendered environment: %v", err)
	}
	for k := range env {
		if strings.HasPrefix(k, "VISITORD_") && !read[k] {
			t.Errorf("%s is set but config.Load never reads it", k)
		}
	}
	if len(cfg.Sites) == 0 || cfg.DemoSite {
		t.Errorf("the sites file yields %d sites (demo %v)", len(cfg.Sites), cfg.DemoSite)
	}
	return cfg
}

// sitesFile finds the file at path among the container's ConfigMap mounts.
func sitesFile(o objects, spec corev1.PodSpec, c corev1.Container, path string) ([]byte, error) {
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, path)
		if err != nil || strings.HasPrefix(rel, "..") || rel == "." {
			continue
		}
		if !m.ReadOnly {
			return nil, fmt.Errorf("%s is on a writable mount", path)
		}
		v := volume(spec, m.Name)
		if v == nil || v.ConfigMap == nil {
			return nil, fmt.Errorf("%s is not on a ConfigMap volume", path)
		}
		key := rel
		if len(v.ConfigMap.Items) > 0 {
			key = ""
			for _, it := range v.ConfigMap.Items {
				if it.Path == rel {
					key = it.Key
				}
			}
		}
		cm := o.configMaps[v.ConfigMap.Name]
		if cm == nil {
			return nil, fmt.Errorf("ConfigMap %q of %s is not rendered", v.ConfigMap.Name, path)
		}
		data, ok := cm.Data[key]
		if !ok {
			return nil, fmt.Errorf("ConfigMap %q has no key %q for %s", cm.Name, key, path)
		}
		return []byte(data), nil
	}
	return nil, fmt.Errorf("VISITORD_SITES %q is on no volume mount", path)
}

// fakeSecrets returns a getenv with secrets made the way secret.example.yaml
// says (openssl rand -base64 32), over the given variables.
func fakeSecrets(vars map[string]string) func(string) string {
	rnd := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	secrets := map[string]string{
		"VISITORD_COOKIE_SECRET": rnd(),
		"VISITORD_DATA_KEY":      "k1:" + rnd(),
		"VISITORD_INDEX_KEY":     rnd(),
	}
	return func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return secrets[k]
	}
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// portNumber resolves a probe's or Service's port, by name or number.
func portNumber(c corev1.Container, port string) int32 {
	if n, err := strconv.Atoi(port); err == nil {
		return int32(n)
	}
	return containerPort(c, port)
}

func mountOf(c corev1.Container, volumeName string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == volumeName {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func mountAt(c corev1.Container, path string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == path {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func volume(spec corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// flagValue returns the argument after flag in args.
func flagValue(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

/**
 * The Kubernetes manifests (deploy/k8s) as a cluster would get them: `kubectl kustomize` renders the base and every
 * overlay offline, every object passes the Kubernetes schema (kubernetes-models), and the rendered objects hold what
 * the deployment promises:
 *  - the pod runs as the image's fixed non-root UID, with a read-only root, no capabilities, no privilege escalation,
 *    seccomp RuntimeDefault, no service-account token, and no writable volume (Secrets only; an emptyDir only in
 *    memory with a size limit);
 *  - startup and readiness probes on /readyz, liveness on /healthz, over HTTPS exactly when the pod serves TLS;
 *  - CPU request = limit, a whole number, and WORKERS taken from it; memory request = limit, at least the README's
 *    memory budget for that many workers; the termination grace above SHUTDOWN_GRACE_MS + SHUTDOWN_TIMEOUT_MS;
 *  - the ConfigMap is a configuration config.ts accepts, naming only variables it reads;
 *  - the Services, PodDisruptionBudget, NetworkPolicy and HorizontalPodAutoscaler select the pods they mean; only
 *    the ingress controller reaches the API port and only the scraper the metrics port; the HPA scales on the pool's
 *    load (published by the adapter from metrics the service exports) with CPU as a fallback.
 * Skips, with a message, without kubectl.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../config.js';
import { ROOT } from '../helper.js';
import { which } from './tools.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- rendered YAML
const K8S = join(ROOT, 'deploy', 'k8s');
const TARGETS = ['base', 'overlays/dev', 'overlays/production'] as const;
const kubectl = which('kubectl');
const noKubectl = kubectl === null ? 'kubectl is not installed (it renders the kustomizations offline)' : false;

/** The fixed UID of the image (deploy/image/Containerfile's USER). */
const imageUser = /^USER (\d+):(\d+)$/m.exec(readFileSync(join(ROOT, 'deploy', 'image', 'Containerfile'), 'utf8'));

/**
 * The README's pod memory budget (capacity model), in MiB: base + HTTP + workers x (model + working set) + the
 * uploads the pool may hold, (workers + MAX_QUEUE) x MAX_UPLOAD_BYTES.
 */
function memoryBudgetMiB(workers: number, maxQueue: number, maxUploadBytes: number): number {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const m = /Pod memory budget = base (\d+) \+ HTTP (\d+) \+ workers x \(model (\d+) \+ working set (\d+)\) \+ uploads \(workers \+ MAX_QUEUE\) x 10 MiB/.exec(readme);
  if (m === null) throw new Error('the README no longer states its pod memory budget in the expected words');
  const [base, http, model, workingSet] = m.slice(1).map(Number) as [number, number, number, number];
  return base + http + workers * (model + workingSet) + ((workers + maxQueue) * maxUploadBytes) / 2 ** 20;
}

function render(target: string): Obj[] {
  const out = spawnSync(kubectl!, ['kustomize', join(K8S, target)], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`kubectl kustomize ${target} failed:\n${out.stderr}`);
  return parseAllDocuments(out.stdout).map((d) => d.toJS() as Obj).filter((o) => o !== null);
}

/** kubernetes-models' class for an object's apiVersion and kind, by its module path. */
async function modelOf(obj: Obj): Promise<(new (data: Obj) => { validate(): void }) | null> {
  const [group, version] = String(obj.apiVersion).includes('/') ? String(obj.apiVersion).split('/') : [null, obj.apiVersion];
  const path = `kubernetes-models/${group === null ? '' : `${group}/`}${version}/${obj.kind}`;
  try {
    const module = (await import(path)) as Record<string, new (data: Obj) => { validate(): void }>;
    return module[obj.kind] ?? null;
  } catch {
    return null;
  }
}

const quantityMiB = (q: string) => {
  const m = /^(\d+)(Mi|Gi)$/.exec(q);
  if (m === null) throw new Error(`memory ${q}: use Mi or Gi`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
};
const matches = (selector: Obj | undefined, labels: Obj) => selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

for (const target of TARGETS) {
  t.test(`deploy/k8s/${target}`, { skip: noKubectl }, async (t) => {
    const objects = render(target);
    const find = (kind: string, name: string) => {
      const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
      if (found === undefined) throw new Error(`no ${kind} ${name}`);
      return found;
    };

    t.test('every object passes the Kubernetes schema', async (t) => {
      for (const obj of objects) {
        const Model = await modelOf(obj);
        t.ok(Model, `${obj.apiVersion} ${obj.kind} is a Kubernetes kind`);
        if (Model === null) continue;
        t.doesNotThrow(() => new Model(obj).validate(), `${obj.kind} ${obj.metadata.name}`);
      }
      if (target !== 'base') t.ok(objects.filter((o) => o.kind !== 'Namespace').every((o) => typeof o.metadata.namespace === 'string'), 'every object has its namespace');
    });

    const deployment = find('Deployment', 'privatoon');
    const pod = deployment.spec.template.spec as Obj;
    const container = (pod.containers as Obj[]).find((c) => c.name === 'privatoon')!;
    const configMap = find('ConfigMap', container.envFrom[0].configMapRef.name);
    const config = configMap.data as Record<string, string>;
    const limits = container.resources.limits as Obj;
    const requests = container.resources.requests as Obj;
    const workers = Number(limits.cpu);

    t.test('the pod is locked down', async (t) => {
      t.equal(pod.automountServiceAccountToken, false, 'no service-account token');
      t.equal(find('ServiceAccount', pod.serviceAccountName).automountServiceAccountToken, false, 'its account mounts none either');
      t.equal(pod.securityContext.runAsNonRoot, true);
      t.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
      t.ok(imageUser, 'the Containerfile names a numeric USER');
      for (const c of [...(pod.initContainers ?? []), ...pod.containers] as Obj[]) {
        const sc = c.securityContext as Obj;
        t.equal(sc.runAsNonRoot, true, `${c.name}: runAsNonRoot`);
        t.equal(String(sc.runAsUser ?? pod.securityContext.runAsUser), imageUser![1], `${c.name}: the image's UID`);
        t.equal(String(sc.runAsGroup ?? pod.securityContext.runAsGroup), imageUser![2], `${c.name}: the image's GID`);
        t.equal(sc.readOnlyRootFilesystem, true, `${c.name}: read-only root`);
        t.equal(sc.allowPrivilegeEscalation, false, `${c.name}: no privilege escalation`);
        t.not(sc.privileged, true);
        t.same(sc.capabilities.drop, ['ALL'], `${c.name}: every capability dropped`);
        t.notOk(sc.capabilities.add, `${c.name}: none added`);
        t.equal((sc.seccompProfile ?? pod.securityContext.seccompProfile).type, 'RuntimeDefault');
      }
      t.notOk(pod.hostNetwork || pod.hostPID || pod.hostIPC, 'no host namespaces');
      for (const volume of pod.volumes as Obj[]) {
        const memoryOnly = volume.emptyDir !== undefined && volume.emptyDir.medium === 'Memory' && volume.emptyDir.sizeLimit !== undefined;
        t.ok(volume.secret !== undefined || memoryOnly, `volume ${volume.name}: a Secret, or a size-limited emptyDir in memory`);
      }
      const tmp = (container.volumeMounts as Obj[]).find((m) => m.mountPath === '/tmp');
      if (tmp !== undefined) t.ok((pod.volumes as Obj[]).find((v) => v.name === tmp.name)?.emptyDir?.medium === 'Memory', '/tmp, if any, lives in memory');
      for (const mount of container.volumeMounts as Obj[]) t.equal(mount.readOnly, true, `${mount.mountPath} is mounted read-only`);
    });

    t.test('probes: startup and readiness on /readyz, liveness on /healthz', async (t) => {
      const scheme = config.TLS_CERT_FILE !== undefined ? 'HTTPS' : 'HTTP';
      const http = (container.ports as Obj[]).find((p) => p.name === 'http');
      t.equal(String(http?.containerPort), config.PORT, 'the http port is the one the server listens on');
      for (const [probe, path] of [['startupProbe', '/readyz'], ['readinessProbe', '/readyz'], ['livenessProbe', '/healthz']] as const) {
        const get = container[probe]?.httpGet as Obj | undefined;
        t.equal(get?.path, path, `${probe} on ${path}`);
        t.equal(get?.port, 'http', `${probe} on the http port`);
        t.equal(get?.scheme ?? 'HTTP', scheme, `${probe} over ${scheme}`);
      }
      const startupS = container.startupProbe.periodSeconds * container.startupProbe.failureThreshold;
      t.ok(startupS >= 60, `start-up (model loading, warm-up) may take ${startupS} s`);
      t.ok(container.livenessProbe.failureThreshold * container.livenessProbe.periodSeconds >= 20, 'liveness is patient: a busy pod is alive');
    });

    t.test('resources, workers and shutdown timing', async (t) => {
      t.ok(Number.isInteger(workers) && workers >= 1, `the CPU limit is whole cores (${limits.cpu})`);
      t.equal(String(requests.cpu), String(limits.cpu), 'CPU request = limit: the workers get the cores the scheduler reserved');
      const fromLimit = (container.env as Obj[]).find((e) => e.name === 'WORKERS')?.valueFrom?.resourceFieldRef;
      t.same(fromLimit && { resource: fromLimit.resource, divisor: String(fromLimit.divisor), containerName: fromLimit.containerName }, { resource: 'limits.cpu', divisor: '1', containerName: 'privatoon' }, 'WORKERS comes from the CPU limit');
      t.notOk('WORKERS' in config, 'and from nowhere else');
      t.equal(requests.memory, limits.memory, 'memory request = limit');
      const loaded = loadConfig({ ...config, WORKERS: String(workers) });
      const budget = memoryBudgetMiB(workers, loaded.pool.maxQueue, loaded.maxUploadBytes);
      t.ok(quantityMiB(limits.memory) >= budget, `memory limit ${limits.memory} covers the README's budget for ${workers} workers (${budget} MiB)`);
      t.ok(quantityMiB(limits.memory) <= budget * 1.5, 'without wasting half of it');
      const grace = Number(config.SHUTDOWN_GRACE_MS);
      t.ok(grace >= 5000, `readiness 503 for ${grace} ms after SIGTERM before the drain (endpoints take seconds to update)`);
      t.ok(pod.terminationGracePeriodSeconds * 1000 > grace + Number(config.SHUTDOWN_TIMEOUT_MS), 'the server stops itself before the kubelet kills it');
    });

    t.test('the ConfigMap is a configuration the server accepts', async (t) => {
      const source = readFileSync(join(ROOT, 'config.ts'), 'utf8');
      for (const name of Object.keys(config)) t.ok(source.includes(`'${name}'`), `${name} is read by config.ts`);
      const env = { ...config, WORKERS: String(workers), REDIS_URL: 'redis://:secret@privatoon-redis:6379' };
      const loaded = loadConfig(env);
      t.equal(loaded.pool.workers, workers);
      t.equal(loaded.host, '0.0.0.0', 'listens on the pod network');
      t.not(loaded.metricsPort, 0, 'metrics on');
      t.equal(String(loaded.metricsPort), String((container.ports as Obj[]).find((p) => p.name === 'metrics')?.containerPort));
      t.ok(loaded.apiKeysFile?.startsWith((container.volumeMounts as Obj[]).find((m) => m.name === 'api-keys')?.mountPath), 'the keys file is in the Secret');
      const redisUrl = (container.env as Obj[]).find((e) => e.name === 'REDIS_URL');
      t.match(redisUrl?.value, /^redis:\/\/:\$\(REDIS_PASSWORD\)@/, 'Redis password from its Secret');
      t.equal((container.env as Obj[]).find((e) => e.name === 'REDIS_PASSWORD')?.valueFrom.secretKeyRef.name, 'privatoon-redis');
      if (target === 'overlays/production') {
        t.ok(loaded.tlsCertFile?.startsWith('/etc/privatoon/tls/') && loaded.tlsKeyFile?.startsWith('/etc/privatoon/tls/'), 'TLS material from a Secret');
        t.ok((pod.volumes as Obj[]).some((v) => v.secret?.secretName === 'privatoon-tls'));
      }
    });

    t.test('Services, PodDisruptionBudget, NetworkPolicy, HorizontalPodAutoscaler', async (t) => {
      const podLabels = deployment.spec.template.metadata.labels as Obj;
      t.ok(matches(deployment.spec.selector.matchLabels, podLabels));
      for (const name of ['privatoon', 'privatoon-metrics']) t.ok(matches(find('Service', name).spec.selector, podLabels), `Service ${name} selects the pods`);
      t.equal(find('Service', 'privatoon-metrics').spec.ports[0].targetPort, 'metrics');
      const pdb = find('PodDisruptionBudget', 'privatoon');
      t.ok(matches(pdb.spec.selector.matchLabels, podLabels), 'the PDB covers the pods');
      t.equal(pdb.spec.maxUnavailable, 1, 'one pod at a time');
      t.equal(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0, 'rollouts never dip below the count');

      const policy = find('NetworkPolicy', 'privatoon');
      t.ok(matches(policy.spec.podSelector.matchLabels, podLabels));
      t.same(policy.spec.policyTypes, ['Ingress', 'Egress'], 'ingress and egress both closed by default');
      const rules = policy.spec.ingress as Obj[];
      t.same(rules.map((r) => r.ports.map((p: Obj) => p.port)), [['http'], ['metrics']], 'two doors: the API port and the metrics port');
      for (const rule of rules) {
        t.ok(rule.from.length > 0 && rule.from.every((peer: Obj) => peer.namespaceSelector !== undefined && peer.podSelector !== undefined), 'each from named pods in a named namespace');
        t.notOk(rule.from.some((peer: Obj) => matches(peer.podSelector.matchLabels, podLabels)), 'our own labels are not stamped onto the peers');
      }
      t.match(rules[0]?.from[0], { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': /ingress/ } } }, 'the API from the ingress controller');
      t.match(rules[1]?.from[0], { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': /monitoring/ } } }, 'metrics from the scraper');
      const redisPods = find('StatefulSet', 'privatoon-redis').spec.template;
      t.ok((policy.spec.egress as Obj[]).some((r) => r.to.some((peer: Obj) => matches(peer.podSelector?.matchLabels, redisPods.metadata.labels))), 'egress to its Redis');
      t.ok(matches(find('NetworkPolicy', 'privatoon-redis').spec.ingress[0].from[0].podSelector.matchLabels, podLabels), 'Redis only from the service');
      t.equal(redisPods.spec.automountServiceAccountToken, false);
      t.equal(redisPods.spec.containers[0].securityContext.readOnlyRootFilesystem, true);
      t.same(redisPods.spec.containers[0].securityContext.capabilities.drop, ['ALL']);

      const hpa = find('HorizontalPodAutoscaler', 'privatoon');
      t.match(hpa.spec.scaleTargetRef, { kind: 'Deployment', name: 'privatoon' });
      t.ok(hpa.spec.minReplicas <= hpa.spec.maxReplicas);
      if (target === 'overlays/production') t.ok(hpa.spec.minReplicas >= 2, 'production keeps two pods or more, so the PDB can let one go');
      const load = (hpa.spec.metrics as Obj[]).find((m) => m.type === 'Pods');
      t.equal(load?.pods.metric.name, 'privatoon_pool_load', 'scales on the pool load...');
      t.ok((hpa.spec.metrics as Obj[]).some((m) => m.type === 'Resource' && m.resource.name === 'cpu'), '...with CPU as a fallback');
      const adapter = readFileSync(join(K8S, 'adapter', 'prometheus-adapter-values.yaml'), 'utf8');
      const metricsSource = readFileSync(join(ROOT, 'plugins', 'metrics.ts'), 'utf8');
      t.match(adapter, /as: privatoon_pool_load/, 'which the adapter publishes');
      for (const name of adapter.match(/privatoon_[a-z_]+(?=\{)/g) ?? []) t.ok(metricsSource.includes(`'${name}'`), `from ${name}, which the service exports`);
    });
  });
}

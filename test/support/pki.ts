/**
 * A real test PKI made at test time: certificate authorities, agent (server)
 * and client certificates with URI/DNS/IP SANs, certificates that are
 * expired or not yet valid, and CRLs. Everything is ECDSA P-256, PEM-encoded,
 * and written to files the way an operator would hand them to the agent and
 * the plugin. Built on @peculiar/x509 and Node's WebCrypto.
 */
// tsyringe, under @peculiar/x509, needs a Reflect metadata polyfill loaded first.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKeyPair = webcrypto.CryptoKeyPair;
type CryptoKey = webcrypto.CryptoKey;

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 60 * 60 * 1000;

export interface Pem {
  readonly cert: string;
  readonly key: string;
}

export interface IssuedCertificate extends Pem {
  /** Hexadecimal serial number, for revocation. */
  readonly serial: string;
}

export interface LeafOptions {
  /** Subject common name. */
  readonly cn: string;
  /** URI SANs, e.g. `spiffe://dc1/host/hv-17` (the first one is the principal). */
  readonly uris?: readonly string[];
  readonly dns?: readonly string[];
  readonly ips?: readonly string[];
  /** Validity relative to now, in days; defaults: valid from yesterday for 30 days. */
  readonly notBeforeDays?: number;
  readonly notAfterDays?: number;
  readonly usage?: 'server' | 'client' | 'both';
}

let serialCounter = 0;
function nextSerial(): string {
  serialCounter += 1;
  // Positive, unique within the process, and never starting with a zero byte.
  return `${(0x40 + (process.pid % 0x3f)).toString(16)}${Date.now().toString(16)}${serialCounter.toString(16).padStart(4, '0')}`;
}

async function keyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

export class TestCa {
  readonly name: string;
  readonly cert: x509.X509Certificate;
  private readonly keys: CryptoKeyPair;

  private constructor(name: string, cert: x509.X509Certificate, keys: CryptoKeyPair) {
    this.name = name;
    this.cert = cert;
    this.keys = keys;
  }

  static async create(name = 'vfmigd test CA'): Promise<TestCa> {
    const keys = await keyPair();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: nextSerial(),
      name: `CN=${name}`,
      notBefore: new Date(Date.now() - DAY_MS),
      notAfter: new Date(Date.now() + 365 * DAY_MS),
      keys,
      signingAlgorithm: ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    return new TestCa(name, cert, keys);
  }

  get certPem(): string {
    return this.cert.toString('pem');
  }

  async issue(options: LeafOptions): Promise<IssuedCertificate> {
    const keys = await keyPair();
    const serial = nextSerial();
    const names: x509.JsonGeneralName[] = [
      ...(options.uris ?? []).map((value) => ({ type: 'url' as const, value })),
      ...(options.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
      ...(options.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
    ];
    const usage = options.usage ?? 'both';
    const purposes = usage === 'server' ? [x509.ExtendedKeyUsage.serverAuth]
      : usage === 'client' ? [x509.ExtendedKeyUsage.clientAuth]
        : [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth];
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(purposes, false),
      await x509.AuthorityKeyIdentifierExtension.create(this.keys.publicKey),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ];
    if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject: `CN=${options.cn}`,
      issuer: this.cert.subject,
      notBefore: new Date(Date.now() + (options.notBeforeDays ?? -1) * DAY_MS),
      notAfter: new Date(Date.now() + (options.notAfterDays ?? 30) * DAY_MS),
      publicKey: keys.publicKey,
      signingKey: this.keys.privateKey,
      signingAlgorithm: ALGORITHM,
      extensions,
    });
    return { cert: cert.toString('pem'), key: await privateKeyPem(keys.privateKey), serial };
  }

  /** A CRL revoking the given serials (an empty one is a valid, current CRL). */
  async crl(revokedSerials: readonly string[] = []): Promise<string> {
    const crl = await x509.X509CrlGenerator.create({
      issuer: this.cert.subject,
      thisUpdate: new Date(Date.now() - 60 * 1000),
      nextUpdate: new Date(Date.now() + 7 * DAY_MS),
      entries: revokedSerials.map((serialNumber) => ({ serialNumber, revocationDate: new Date(Date.now() - 60 * 1000), reason: x509.X509CrlReason.keyCompromise })),
      signingKey: this.keys.privateKey,
      signingAlgorithm: ALGORITHM,
      extensions: [await x509.AuthorityKeyIdentifierExtension.create(this.keys.publicKey)],
    });
    // OpenSSL reads only the `X509 CRL` PEM label; the library writes `CRL`.
    return x509.PemConverter.encode(crl.rawData, 'X509 CRL');
  }
}

/** Paths of PEM files written to a directory, as an operator lays them out. */
export interface PemFiles {
  readonly cert: string;
  readonly key: string;
}

export function writePem(dir: string, name: string, pem: Pem): PemFiles {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  writeFileSync(cert, pem.cert);
  writeFileSync(key, pem.key, { mode: 0o600 });
  return { cert, key };
}

export function writeText(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

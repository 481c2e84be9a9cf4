/**
 * Save and load streams for a device whose state is small enough to be
 * taken whole, as one image, whenever it is wanted, and that saves while it
 * runs (PRE_COPY) the way mlx5 does: a save opened while the VF runs hands
 * out an image of the state at once (the initial data), then a whole new
 * image each time it is read after the state has changed (dirty data); once
 * the VF is stopped, the final image, and then the end. A save opened with
 * the VF stopped is the final image alone. A resume takes images in order,
 * checks each as it completes, and applies only the last, at commit.
 *
 * Images follow one another with nothing between them, so the device's
 * image format must say its own length in its first bytes (`ImageFraming`);
 * and only an image taken stopped may be applied, which the format must tell
 * too (an image taken while the VF ran misses the work it had in flight).
 */
import { DriverError, type DeviceLoadStream, type DeviceSaveStream, type PrecopyInfo } from './driver.ts';

/** The device's state as whole images. */
export interface ImageSource {
  /**
   * The state now, as one image. `final`: the VF is stopped and this image
   * is the one to apply; otherwise it runs, and the image only lets a
   * destination check and prepare early.
   */
  capture(final: boolean): Uint8Array;
  /** The VF is stopped: its state no longer changes, and the next image is the final one. */
  stopped(): boolean;
}

interface Outgoing {
  readonly bytes: Uint8Array;
  at: number;
  /** The first image of a save opened while the VF ran (VFIO's initial bytes); the others are dirty bytes. */
  readonly initial: boolean;
}

/**
 * A save of `source`. Whether the state changed is judged by comparing a
 * new image with the last one taken while the VF ran: exact, and cheap for
 * a state of a few kilobytes (a larger one wants dirty tracking, as
 * paged-streams.ts has).
 */
export function imageSaveStream(source: ImageSource): DeviceSaveStream {
  let open = true;
  /** The image being handed out. */
  let current: Outgoing | undefined;
  /** The last image taken while the VF ran: what "changed" is judged against. */
  let lastRunning: Uint8Array | undefined;
  /** Taken the first time it is wanted once the VF is stopped, and not again: the state it has then is the state. */
  let final: Uint8Array | undefined;
  let finalQueued = false;

  const finalImage = (): Uint8Array => (final ??= source.capture(true));
  const rest = (): number => (current === undefined ? 0 : current.bytes.length - current.at);
  /** An image taken now while the VF runs, if the state changed since the last one. */
  const changed = (): Uint8Array | undefined => {
    const now = source.capture(false);
    return lastRunning !== undefined && sameBytes(now, lastRunning) ? undefined : now;
  };
  const nextImage = (): Outgoing | undefined => {
    if (source.stopped()) {
      if (finalQueued) return undefined;
      finalQueued = true;
      return { bytes: finalImage(), at: 0, initial: false };
    }
    const now = changed();
    if (now === undefined) return undefined;
    lastRunning = now;
    return { bytes: now, at: 0, initial: false };
  };

  if (source.stopped()) {
    finalQueued = true;
    current = { bytes: finalImage(), at: 0, initial: false };
  } else {
    lastRunning = source.capture(false);
    current = { bytes: lastRunning, at: 0, initial: true };
  }

  return {
    async read(maxBytes: number): Promise<Uint8Array> {
      if (!open) throw new DriverError('driver-failure', 'read from a closed save stream');
      const pieces: Uint8Array[] = [];
      let filled = 0;
      while (filled < maxBytes) {
        if (current === undefined || current.at === current.bytes.length) {
          // An image begun is always finished first: a reader finds the next one only after it.
          const next = nextImage();
          if (next === undefined) break;
          current = next;
        }
        const piece = current.bytes.subarray(current.at, current.at + maxBytes - filled);
        current.at += piece.length;
        pieces.push(piece);
        filled += piece.length;
      }
      // Fewer than asked: nothing more now (while the VF runs), or the end (once it is stopped).
      return pieces.length === 1 ? (pieces[0] as Uint8Array) : Buffer.concat(pieces, filled);
    },
    async stopCopyBytes(): Promise<number> {
      if (finalQueued) return rest();
      // Once stopped, exact: the final image is taken now and kept. While running, what one would be now.
      return rest() + (source.stopped() ? finalImage().length : source.capture(false).length);
    },
    async precopyInfo(): Promise<PrecopyInfo> {
      if (source.stopped()) throw new DriverError('driver-failure', 'the VF is stopped: there is no pre-copy information');
      const initial = current?.initial === true;
      const dirty = changed();
      return { initialBytes: initial ? rest() : 0, dirtyBytes: (initial ? 0 : rest()) + (dirty?.length ?? 0), reinit: false };
    },
    close(): void {
      open = false;
      current = undefined;
      lastRunning = undefined;
      final = undefined;
    },
  };
}

/** How a reader finds where each image of a row ends. */
export interface ImageFraming {
  /** The bytes at an image's start that say its length. */
  readonly headerBytes: number;
  /**
   * The length of the image that begins with `header` (its first
   * `headerBytes`), at least `headerBytes`; throws `corrupt-state` or
   * `incompatible-state` if no image of this device can begin so.
   */
  imageLength(header: Uint8Array): number;
}

export interface ImageHandlers {
  /** Each image as it completes, to refuse a bad stream early; must change nothing. */
  check?(image: Buffer): void;
  /** The last image, at commit: validate it whole, then apply it. */
  apply(image: Buffer): Promise<void> | void;
}

/** A resume of images framed by `framing`. Holds the last complete image and the one arriving, nothing more. */
export function imageLoadStream(framing: ImageFraming, handlers: ImageHandlers): DeviceLoadStream {
  let open = true;
  let last: Buffer | undefined;
  /** The image arriving: its bytes so far, and its length once its header is in. */
  let arriving: Buffer[] = [];
  let arrivingBytes = 0;
  let length: number | undefined;

  const complete = (): Buffer => {
    const image = Buffer.concat(arriving, arrivingBytes);
    arriving = [];
    arrivingBytes = 0;
    return image;
  };

  return {
    async write(bytes: Uint8Array): Promise<void> {
      if (!open) throw new DriverError('driver-failure', 'write to a closed resume stream');
      let at = 0;
      while (at < bytes.length) {
        const want = (length ?? framing.headerBytes) - arrivingBytes;
        const piece = bytes.subarray(at, at + want);
        arriving.push(Buffer.from(piece)); // the bytes are the caller's
        arrivingBytes += piece.length;
        at += piece.length;
        if (arrivingBytes < (length ?? framing.headerBytes)) break;
        if (length === undefined) {
          const header = Buffer.concat(arriving, arrivingBytes);
          arriving = [header];
          length = framing.imageLength(header);
          if (length < framing.headerBytes) throw new DriverError('corrupt-state', `an image of ${length} bytes is shorter than its own ${framing.headerBytes}-byte header`);
          if (length > arrivingBytes) continue;
        }
        const image = complete();
        length = undefined;
        handlers.check?.(image);
        last = image;
      }
    },
    async commit(): Promise<void> {
      if (!open) throw new DriverError('driver-failure', 'commit of a closed resume stream');
      open = false;
      if (arrivingBytes > 0) {
        const of = length === undefined ? `of the ${framing.headerBytes} bytes of its header` : `of its ${length} bytes`;
        throw new DriverError('corrupt-state', `the state ends inside an image: it has ${arrivingBytes} ${of}`);
      }
      if (last === undefined) throw new DriverError('corrupt-state', 'the state holds no image');
      const image = last;
      last = undefined;
      await handlers.apply(image);
    },
    abort(): void {
      open = false;
      last = undefined;
      arriving = [];
      arrivingBytes = 0;
    },
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}

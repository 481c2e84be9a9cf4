/** The image streams on a made-up device: a version counter, imaged as 12 bytes that say their own length. */
import test from 'ava';
import { DriverError } from './driver.ts';
import { imageLoadStream, imageSaveStream, type ImageFraming, type ImageSource } from './image-streams.ts';

const IMAGE_BYTES = 12;

/** Image: u32 length, u32 version, u8 final, 3 bytes of padding. */
function image(version: number, final: boolean): Uint8Array {
  const bytes = new Uint8Array(IMAGE_BYTES);
  const dv = new DataView(bytes.buffer);
  dv.setUint32(0, IMAGE_BYTES, true);
  dv.setUint32(4, version, true);
  bytes[8] = final ? 1 : 0;
  return bytes;
}

class Device implements ImageSource {
  version = 0;
  running = true;
  captures = 0;
  capture(final: boolean): Uint8Array {
    if (final && this.running) throw new Error('a final image of a running device');
    this.captures += 1;
    return image(this.version, final);
  }
  stopped(): boolean {
    return !this.running;
  }
}

const framing: ImageFraming = {
  headerBytes: 4,
  imageLength: (header) => new DataView(header.buffer, header.byteOffset).getUint32(0, true),
};

/** The images in `data`, as [version, final]. */
function images(data: Uint8Array): [number, boolean][] {
  const out: [number, boolean][] = [];
  for (let at = 0; at < data.length; at += IMAGE_BYTES) {
    const dv = new DataView(data.buffer, data.byteOffset + at, IMAGE_BYTES);
    out.push([dv.getUint32(4, true), dv.getUint8(8) === 1]);
  }
  return out;
}

test('a save opened while running: the initial image, a new one only after a change, the final one once stopped, then the end', async (t) => {
  const device = new Device();
  const save = imageSaveStream(device);
  t.deepEqual((await save.precopyInfo()), { initialBytes: IMAGE_BYTES, dirtyBytes: 0, reinit: false });
  const first = await save.read(5);
  t.is(first.length, 5, 'images are cut as the reads fall');
  t.deepEqual((await save.precopyInfo()), { initialBytes: IMAGE_BYTES - 5, dirtyBytes: 0, reinit: false });
  device.version = 1;
  t.deepEqual((await save.precopyInfo()), { initialBytes: IMAGE_BYTES - 5, dirtyBytes: IMAGE_BYTES, reinit: false }, 'a change: a whole new image is due');
  const second = await save.read(100);
  t.is(second.length, IMAGE_BYTES - 5 + IMAGE_BYTES, 'the rest of the initial image, then the new one');
  t.deepEqual((await save.precopyInfo()), { initialBytes: 0, dirtyBytes: 0, reinit: false });
  t.is((await save.read(100)).length, 0, 'nothing changed: nothing to hand out for now');
  device.version = 2;
  const third = await save.read(4);
  t.deepEqual((await save.precopyInfo()), { initialBytes: 0, dirtyBytes: IMAGE_BYTES - 4, reinit: false }, 'what is left of a dirty image is dirty');
  t.is((await save.stopCopyBytes()), IMAGE_BYTES - 4 + IMAGE_BYTES, 'running: the rest, and what a final image would be now');

  device.running = false;
  await t.throwsAsync(async () => (await save.precopyInfo()), { instanceOf: DriverError }, 'no pre-copy information once stopped');
  const left = (await save.stopCopyBytes());
  device.version = 3; // a state that changes after the final image was taken is not the final image's business
  const tail = await save.read(1000);
  t.is(tail.length, left, 'stopped: stopCopyBytes is exact');
  t.is((await save.read(1000)).length, 0, 'and then the end');
  t.deepEqual(images(Buffer.concat([first, second, third, tail])), [[0, false], [1, false], [2, false], [2, true]]);
  save.close();
  await t.throwsAsync(save.read(1), { instanceOf: DriverError });
});

test('a save opened stopped is the final image alone, taken at once', async (t) => {
  const device = new Device();
  device.running = false;
  const save = imageSaveStream(device);
  t.is(device.captures, 1);
  t.is((await save.stopCopyBytes()), IMAGE_BYTES);
  const data = Buffer.concat([await save.read(7), await save.read(7), await save.read(7)]);
  t.deepEqual(images(data), [[0, true]]);
  t.is(device.captures, 1, 'nothing taken again');
  t.is((await save.stopCopyBytes()), 0);
});

test('a resume takes images in any slicing, checks each as it completes, and applies only the last', async (t) => {
  const checked: number[] = [];
  let applied: Buffer | undefined;
  const load = imageLoadStream(framing, {
    check: (bytes) => { checked.push(bytes.readUInt32LE(4)); },
    apply: (bytes) => { applied = bytes; },
  });
  const data = Buffer.concat([image(0, false), image(1, false), image(1, true)]);
  for (let at = 0; at < data.length; at += 5) await load.write(data.subarray(at, at + 5));
  t.deepEqual(checked, [0, 1, 1], 'each image checked once it is whole');
  t.is(applied, undefined, 'nothing applied before the commit');
  await load.commit();
  t.deepEqual(images(applied ?? Buffer.alloc(0)), [[1, true]]);
});

test('a resume refuses an image its check refuses, a stream that ends inside an image, and one with no image', async (t) => {
  const refusing = imageLoadStream(framing, {
    check: (bytes) => { if (bytes.readUInt32LE(4) === 7) throw new DriverError('corrupt-state', 'version 7 is bad'); },
    apply: () => t.fail('nothing is applied'),
  });
  await refusing.write(image(1, false));
  await t.throwsAsync(refusing.write(image(7, true)), { instanceOf: DriverError, message: /version 7/ });

  for (const [data, message] of [
    [Buffer.concat([image(0, false), image(1, true).subarray(0, 11)]), /ends inside an image: it has 11 of its 12 bytes/],
    [Buffer.concat([image(0, true), Buffer.from([12, 0])]), /it has 2 of the 4 bytes of its header/],
    [Buffer.alloc(0), /holds no image/],
  ] as const) {
    const load = imageLoadStream(framing, { apply: () => t.fail('nothing is applied') });
    await load.write(data);
    const error = await t.throwsAsync(load.commit(), { instanceOf: DriverError });
    t.is(error?.kind, 'corrupt-state');
    t.regex(error?.message ?? '', message);
  }
  const tiny = imageLoadStream(framing, { apply: () => t.fail('nothing is applied') });
  await t.throwsAsync(tiny.write(Buffer.from([2, 0, 0, 0])), { instanceOf: DriverError, message: /shorter than its own 4-byte header/ });
});

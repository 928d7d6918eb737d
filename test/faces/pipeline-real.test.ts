/**
 * The whole face path on a real photo: YuNet finds the face, White-box (standing in for both the whole-image and the
 * head model: NHWC, BGR, -1..1) stylises the image and the 288 crop, and the head is blended back.
 */
import t from 'tap';
import { faceMask } from '../../workers/faces/mask.js';
import { DEFAULT_FACE_OPTIONS, stylizeFaces } from '../../workers/faces/pipeline.js';
import { applyAffine, invertAffine } from '../../workers/faces/similarity.js';
import { warpAffine } from '../../workers/faces/warp.js';
import { checkYunetOutputs, yunetDetector } from '../../workers/faces/yunet.js';
import { loadRgb, missingShared, openWhitebox, openYunet, WHITEBOX, YUNET } from './real.js';

const skip = missingShared(YUNET, WHITEBOX);
if (skip !== undefined) {
  t.test('the real face pipeline', { skip }, async () => {});
} else {
  t.test('portrait: one face, stylised inside its mask, identical outside', async (t) => {
    const yunet = await openYunet();
    const whitebox = await openWhitebox();
    t.teardown(async () => {
      await yunet.session.release();
      await whitebox.session.release();
    });
    checkYunetOutputs(yunet.session.outputNames);
    const { rgb: original, width, height } = await loadRgb('dctnet_input_portrait.png', 512);
    const whole = await whitebox.stylize(original, width, height);
    const crops: number[] = [];
    const out = await stylizeFaces({
      original,
      result: whole,
      width,
      height,
      detect: yunetDetector(yunet.run),
      runHead: async (crop, size) => {
        crops.push(size);
        return whitebox.stylize(crop, size, size);
      },
    });
    t.equal(out.placed.length, 1, 'one face');
    t.same(crops, [DEFAULT_FACE_OPTIONS.cropSize], 'one 288 crop');
    const { face, toCrop, region } = out.placed[0]!;
    // The crop's centre lands inside the detected face box.
    const centre = applyAffine(invertAffine(toCrop), { x: 144, y: 144 });
    t.ok(centre.x > face.box.x && centre.x < face.box.x + face.box.width && centre.y > face.box.y && centre.y < face.box.y + face.box.height, 'the crop is centred on the face');

    const mask = warpAffine(faceMask(DEFAULT_FACE_OPTIONS.cropSize), toCrop, width, height, 'zero').data;
    let outside = 0;
    let outsideChanged = 0;
    let inside = 0;
    let insideDiff = 0;
    for (let i = 0; i < width * height; i++) {
      let d = 0;
      for (let c = 0; c < 3; c++) d += Math.abs(out.rgb[i * 3 + c]! - whole[i * 3 + c]!);
      if (mask[i] === 0) {
        outside++;
        if (d !== 0) outsideChanged++;
      } else if (mask[i]! >= 0.99) {
        inside++;
        insideDiff += d / 3;
      }
    }
    t.equal(outsideChanged, 0, `all ${outside} pixels outside the face mask are identical to the whole result`);
    t.ok(inside > 1000, `${inside} pixels fully inside the mask (region ${JSON.stringify(region)})`);
    const mean = insideDiff / inside;
    t.ok(mean > 2, `inside the face the head result differs from the whole result (mean ${mean.toFixed(1)} levels)`);
  });
}

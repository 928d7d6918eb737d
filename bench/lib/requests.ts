/**
 * The requests the runs send. Uploads go as a raw body (`Content-Type: image/jpeg`) with the options in the query
 * string: the cheapest shape for the service to read, so the numbers are the pipeline's, not multipart parsing's.
 */
import { withFault, type Fault } from '../../test/fixtures/faults.js';
import type { RequestSpec } from './client.js';
import type { BenchImage } from './images.js';

/** `fault`: the upload carries the marker the fault-injecting worker answers (a service started with `faults`). */
export function cartoonize(key: string, style: string, image: Pick<BenchImage, 'jpeg'>, opts: { fault?: Fault; label?: string; query?: string } = {}): RequestSpec {
  return {
    method: 'POST',
    path: `/api/cartoonize?style=${encodeURIComponent(style)}&format=jpeg${opts.query ? `&${opts.query}` : ''}`,
    headers: {
      'content-type': 'image/jpeg',
      'x-api-key': key,
    },
    body: opts.fault !== undefined ? withFault(image.jpeg, opts.fault) : image.jpeg,
    ...(opts.label !== undefined ? { label: opts.label } : {}),
  };
}

/** Cycles through the images: request i gets image i mod n. */
export function cycling(key: string, style: string, images: readonly BenchImage[]): (i: number) => RequestSpec {
  return (i) => cartoonize(key, style, images[i % images.length]!);
}

/**
 * The requests the runs send. Uploads go as a raw body (`Content-Type: image/jpeg`) with the options in the query
 * string: the cheapest shape for the service to read, so the numbers are the pipeline's, not multipart parsing's.
 */
import type { RequestSpec } from './client.js';
import type { BenchImage } from './images.js';

export type Hook = 'throw' | 'exit' | 'hang';

export function cartoonize(key: string, style: string, image: Pick<BenchImage, 'jpeg'>, opts: { hook?: Hook; label?: string; query?: string } = {}): RequestSpec {
  return {
    method: 'POST',
    path: `/api/cartoonize?style=${encodeURIComponent(style)}&format=jpeg${opts.query ? `&${opts.query}` : ''}`,
    headers: {
      'content-type': 'image/jpeg',
      'x-api-key': key,
      ...(opts.hook !== undefined ? { 'x-privatoon-test-hook': opts.hook } : {}),
    },
    body: image.jpeg,
    ...(opts.label !== undefined ? { label: opts.label } : {}),
  };
}

/** Cycles through the images: request i gets image i mod n. */
export function cycling(key: string, style: string, images: readonly BenchImage[]): (i: number) => RequestSpec {
  return (i) => cartoonize(key, style, images[i % images.length]!);
}

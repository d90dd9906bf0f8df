// three.js keeps matrices column-major; the wire and the dataset use row-major 4×4 lists.

export function rowMajor4(elements: ArrayLike<number>): number[][] {
  const m: number[][] = [];
  for (let r = 0; r < 4; r++) m.push([elements[r], elements[4 + r], elements[8 + r], elements[12 + r]]);
  return m;
}

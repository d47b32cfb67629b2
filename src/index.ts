import 'reflect-metadata';
import { container } from 'tsyringe';
const c = container.createChildContainer();
export const x: number = 1;
console.log(typeof c);
